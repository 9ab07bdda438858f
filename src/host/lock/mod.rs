//! The cluster lock of a run that takes it (`up`, `reset`, `upgrade`): [`ClusterLock`] takes it
//! on the first server through the engine and gives it back (also after Ctrl-C); its answer means
//! taken, taken over from a stale holder (with a note to show), or held by another run (an error
//! naming it). The lock file, its scripts and their answers are `file`; this workstation as a
//! holder is `workstation`.

use std::time::Duration;

mod file;
mod workstation;

pub use file::{
    LOCK_PATH, LockAnswer, LockLine, lock_acquire_script, lock_release_script, parse_lock_answer,
    read_script, remove_script,
};
pub use workstation::{Workstation, local_hostname};

use crate::engine::{Engine, Failure, HostId, Output};
use crate::ssh::{ExecOutput, ExecRequest};
use file::{new_run_id, owner};

/// How long releasing the lock may take, also after Ctrl-C.
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(15);

/// The command that gives `run_id`'s lock back. It runs also after Ctrl-C: the unlock is quick,
/// and a lock left behind blocks the next run until it goes stale.
fn release_request(run_id: &str) -> ExecRequest {
    ExecRequest::new(lock_release_script(run_id))
        .sudo(true)
        .ignore_cancel(true)
        .timeout(UNLOCK_TIMEOUT)
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Held(#[from] LockHeld),
    /// The lock script did not run to an answer (sudo refused, the host went away, Ctrl-C).
    #[error("{host}: cannot take the up lock: {failure}")]
    NotTaken { host: String, failure: Failure },
}

/// The cluster lock of one run, on the first server: taken in a round trip of its own
/// ([`ClusterLock::acquire`]) or from an answer folded into another command
/// ([`ClusterLock::answered`]), and released once at the end ([`ClusterLock::release`]), also
/// after Ctrl-C. Every command that changes the cluster holds one in its `RunCore`; `up` folds
/// the take into its facts read and the release into its last command (`up/cluster_lock.rs`).
#[derive(Debug)]
pub struct ClusterLock {
    host: HostId,
    run_id: String,
    /// What holds it, for a refused run to read (`edgeops reset`).
    tag: &'static str,
    cluster: String,
    stale_after: Duration,
    held: bool,
}

impl ClusterLock {
    /// A lock of this run (a fresh run id), not taken yet.
    pub fn new(
        host: HostId,
        tag: &'static str,
        cluster: String,
        stale_after: Duration,
    ) -> ClusterLock {
        ClusterLock {
            host,
            run_id: new_run_id(),
            tag,
            cluster,
            stale_after,
            held: false,
        }
    }

    pub fn host(&self) -> HostId {
        self.host
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn is_held(&self) -> bool {
        self.held
    }

    /// How long a lock left behind blocks others (`lock_expiry` in `[cluster]`).
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// The owner text written into the lock file.
    pub fn owner(&self) -> String {
        owner(&self.run_id, Some(self.tag))
    }

    /// The acquire script, to run alone or folded into another command.
    pub fn acquire_script(&self) -> String {
        lock_acquire_script(&self.owner(), self.stale_after)
    }

    /// Take the lock in a round trip of its own. `Ok(Some(note))`: taken over from a stale or
    /// gone holder, the note says whose.
    pub async fn acquire(&mut self, engine: &Engine) -> Result<Option<String>, LockError> {
        let request = ExecRequest::new(self.acquire_script()).sudo(true);
        let out = engine
            .exec(self.host, "lock", &request, Output::Logged)
            .await
            .map_err(|failure| {
                if failure.kind == crate::engine::FailureKind::Cancelled {
                    // Cancelled mid-exec: the lock may be taken without the answer having
                    // come back; the release only removes a lock of this run, so try it.
                    self.held = true;
                }
                LockError::NotTaken {
                    host: engine.name(self.host).to_owned(),
                    failure,
                }
            })?;
        let answer = parse_lock_answer(&out.stdout_lossy());
        self.answered(engine, answer, &out)
    }

    /// Settle the lock script's `answer` (from `out`, its whole exec: the reason when there is
    /// no answer).
    pub fn answered(
        &mut self,
        engine: &Engine,
        answer: Option<LockAnswer>,
        out: &ExecOutput,
    ) -> Result<Option<String>, LockError> {
        let host = engine.name(self.host).to_owned();
        let Some(answer) = answer else {
            let failure = if out.success() {
                Failure::refused(format!(
                    "the lock script answered {:?}",
                    out.stdout_lossy().trim()
                ))
            } else {
                Failure::exited("lock", out, false, engine.log().redactor())
            };
            return Err(LockError::NotTaken { host, failure });
        };
        let note = settle(answer, &self.cluster, &host, self.stale_after)?;
        self.held = true;
        Ok(note)
    }

    /// The lock's take went out but its answer never came back (Ctrl-C mid-exec): it may be
    /// taken, and the release only removes a lock of this run, so count it as held.
    pub fn taken_unanswered(&mut self) {
        self.held = true;
    }

    /// The lock is gone without [`ClusterLock::release`]: released by a command it was folded
    /// into, or lost with a reboot of its host (it lives on tmpfs).
    pub fn gone(&mut self) {
        self.held = false;
    }

    /// Give the lock back if this run holds it (also after Ctrl-C: the release ignores the
    /// cancel and is bounded by `UNLOCK_TIMEOUT`). `Some(note)`: it could not, and why.
    pub async fn release(&mut self, engine: &Engine) -> Option<String> {
        if !self.held {
            return None;
        }
        self.held = false;
        let result = engine
            .run(
                self.host,
                "unlock",
                &release_request(&self.run_id),
                Output::Logged,
            )
            .await;
        result.err().map(|failure| {
            format!(
                "{}: could not release the up lock ({failure}); it expires after {} (or: edgeops unlock INVENTORY)",
                engine.name(self.host),
                humantime::format_duration(self.stale_after)
            )
        })
    }
}

/// Another edgeops run (`up`, `reset` or `upgrade`) holds the cluster's lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "cluster {cluster} is locked by another edgeops run: {holder}, since {} ago (lock file {lock} on {host}); \
     wait for it to finish, or if that run died, `edgeops unlock INVENTORY` removes the lock \
     (locks older than {} are taken over: `lock_expiry` in [cluster])",
    humantime::format_duration(*age),
    humantime::format_duration(*stale_after),
    lock = LOCK_PATH
)]
pub struct LockHeld {
    pub cluster: String,
    pub host: String,
    pub holder: String,
    pub age: Duration,
    pub stale_after: Duration,
}

/// Settle the lock script's answer on `host`: `Ok(None)` taken, `Ok(Some(note))` taken over from
/// a stale holder (the note says whose and how old), `Err` held by a live run.
fn settle(
    answer: LockAnswer,
    cluster: &str,
    host: &str,
    stale_after: Duration,
) -> Result<Option<String>, LockHeld> {
    // The holder text comes from the host's lock file (anyone with root there can write it):
    // shown, never obeyed by the terminal.
    let clean = |holder: String| crate::sanitize::clean_line(&holder).into_owned();
    match answer {
        LockAnswer::Acquired => Ok(None),
        LockAnswer::AcquiredStale { age, holder } => Ok(Some(format!(
            "took over a stale lock on {host} ({}, {} old)",
            clean(holder),
            humantime::format_duration(Duration::from_secs(age))
        ))),
        LockAnswer::AcquiredFromGone { age, holder } => Ok(Some(format!(
            "warning: took over the lock on {host} of a run that is gone ({holder}, {} old: its pid runs no edgeops on this workstation any more)",
            humantime::format_duration(Duration::from_secs(age))
        ))),
        LockAnswer::Held { age, holder } => Err(LockHeld {
            cluster: cluster.to_string(),
            host: host.to_string(),
            holder: clean(holder),
            age: Duration::from_secs(age),
            stale_after,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(1800);

    #[test]
    fn a_holder_text_with_terminal_escapes_is_shown_as_text() {
        let held = settle(
            LockAnswer::Held {
                age: 5,
                holder: "eve\u{1b}]0;owned\u{7}\u{1b}[2J@ws pid 1 run r".into(),
            },
            "c",
            "s1",
            STALE,
        )
        .unwrap_err();
        let shown = held.to_string();
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(shown.contains("eve]0;owned[2J@ws pid 1 run r"), "{shown}");
        let note = settle(
            LockAnswer::AcquiredStale {
                age: 4000,
                holder: "x\r\u{1b}[1Ay".into(),
            },
            "c",
            "s1",
            STALE,
        )
        .unwrap()
        .unwrap();
        assert!(note.contains("(x[1Ay, "), "{note}");
    }

    #[test]
    fn owner_names_the_run_and_what_holds_the_lock() {
        let id = new_run_id();
        assert_eq!(id.len(), 12);
        let plain = owner(&id, None);
        assert!(
            plain.ends_with(&format!(" pid {} run {id}", std::process::id())),
            "{plain}"
        );
        assert_eq!(
            owner(&id, Some("edgeops reset")),
            format!("{plain} (edgeops reset)")
        );
    }

    #[test]
    fn lock_lines_are_taken_apart() {
        let line =
            LockLine::parse("1700000000 bob@ws-1 pid 77 run ab12 (edgeops reset)\n").unwrap();
        assert_eq!(
            line.line,
            "1700000000 bob@ws-1 pid 77 run ab12 (edgeops reset)"
        );
        assert_eq!(line.since_epoch, 1_700_000_000);
        assert_eq!(line.who, "bob@ws-1");
        assert_eq!(line.host.as_deref(), Some("ws-1"));
        assert_eq!(line.pid, Some(77));
        assert_eq!(line.run_id.as_deref(), Some("ab12"));
        assert_eq!(line.command.as_deref(), Some("edgeops reset"));
        let here = Workstation {
            hostname: "ws-1".into(),
            edgeops_pids: vec![1, 2],
        };
        assert!(line.holder_is_gone(&here));
        let elsewhere = Workstation {
            hostname: "ws-2".into(),
            edgeops_pids: vec![],
        };
        assert!(!line.holder_is_gone(&elsewhere));
        assert_eq!(LockLine::parse("garbage"), None);
    }

    #[test]
    fn acquired_is_taken_without_a_note() {
        assert!(matches!(
            settle(LockAnswer::Acquired, "c", "srv", STALE),
            Ok(None)
        ));
    }

    #[test]
    fn a_stale_lock_taken_over_names_its_holder_and_age() {
        let answer = LockAnswer::AcquiredStale {
            age: 3600,
            holder: "ws up 7".into(),
        };
        let note = settle(answer, "c", "srv", STALE).unwrap().unwrap();
        assert_eq!(note, "took over a stale lock on srv (ws up 7, 1h old)");
    }

    #[test]
    fn a_held_lock_names_cluster_holder_host_and_file() {
        let answer = LockAnswer::Held {
            age: 65,
            holder: "ws reset 9".into(),
        };
        let message = settle(answer, "pi-lab", "pi-01", STALE)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("cluster pi-lab is locked by another edgeops run: ws reset 9"),
            "{message}"
        );
        assert!(message.contains("1m 5s ago"), "{message}");
        assert!(message.contains(LOCK_PATH), "{message}");
        assert!(message.contains("on pi-01"), "{message}");
        assert!(message.contains("older than 30m"), "{message}");
    }
}
