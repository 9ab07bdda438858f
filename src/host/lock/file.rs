//! The cluster lock file on the first server ([`LOCK_PATH`]): the scripts that take, release,
//! read and remove it, what they print, the owner text a run writes into it and the line a
//! holder left there, taken apart.

use std::time::Duration;

use super::workstation::{Workstation, local_hostname};
use crate::shell::with_vars;

/// The `up` lock on the first server: on tmpfs, so a reboot (which kills any run) clears it.
pub const LOCK_PATH: &str = "/run/edgeops-up.lock";

/// Take the lock, or say who holds it: prints `acquired`, `acquired-stale AGE HOLDER`,
/// `acquired-gone AGE HOLDER` or `held AGE HOLDER`. Creation is atomic (`set -C` = O_EXCL), so two
/// runs cannot both win. A lock is taken over when it is older than `stale_after`, or when its
/// holder ran on this workstation and its pid runs no edgeops any more (`gone`).
pub fn lock_acquire_script(owner: &str, stale_after: Duration) -> String {
    lock_acquire_script_for(owner, stale_after, &Workstation::current())
}

fn lock_acquire_script_for(
    owner: &str,
    stale_after: Duration,
    workstation: &Workstation,
) -> String {
    let live: Vec<String> = workstation
        .edgeops_pids
        .iter()
        .map(u32::to_string)
        .collect();
    with_vars(
        &[
            ("f", LOCK_PATH),
            ("me", owner),
            ("stale", &stale_after.as_secs().to_string()),
            ("ws", &workstation.hostname),
            ("live", &live.join(" ")),
        ],
        include_str!("sh/lock-acquire.sh"),
    )
}

/// Remove the lock only if this run holds it (`run ID` is part of the owner text).
pub fn lock_release_script(run_id: &str) -> String {
    with_vars(
        &[("f", LOCK_PATH), ("pat", &format!("run {run_id}"))],
        include_str!("sh/lock-release.sh"),
    )
}

/// What [`lock_acquire_script`] printed.
#[derive(Debug, PartialEq, Eq)]
pub enum LockAnswer {
    Acquired,
    /// A stale lock of `holder`, `age` seconds old, was replaced.
    AcquiredStale {
        age: u64,
        holder: String,
    },
    /// The lock of `holder`, whose process is gone from this workstation, was replaced.
    AcquiredFromGone {
        age: u64,
        holder: String,
    },
    Held {
        age: u64,
        holder: String,
    },
}

pub fn parse_lock_answer(stdout: &str) -> Option<LockAnswer> {
    let line = stdout.lines().next()?.trim();
    let mut parts = line.splitn(3, ' ');
    let word = parts.next()?;
    match word {
        "acquired" => Some(LockAnswer::Acquired),
        "acquired-stale" | "acquired-gone" | "held" => {
            let age = parts.next()?.parse().unwrap_or(0);
            let holder = parts.next().unwrap_or("an unknown run").to_owned();
            Some(match word {
                "held" => LockAnswer::Held { age, holder },
                "acquired-gone" => LockAnswer::AcquiredFromGone { age, holder },
                _ => LockAnswer::AcquiredStale { age, holder },
            })
        }
        _ => None,
    }
}

/// Read the lock as it is: `none`, or `now EPOCH` then the lock file's line (`EPOCH OWNER`).
pub fn read_script() -> String {
    format!(
        "f={lock}\nif [ -e \"$f\" ]; then echo \"now $(date +%s)\"; head -n 1 \"$f\"; else echo none; fi\n",
        lock = LOCK_PATH
    )
}

/// Remove the lock only if it still holds `line` (the one shown to the user): prints `removed`,
/// `gone` (no lock any more) or `changed LINE` (another run took it meanwhile).
pub fn remove_script(line: &str) -> String {
    format!(
        "f={lock}; want={want}\n\
         read -r t h <\"$f\" 2>/dev/null || {{ echo gone; exit 0; }}\n\
         if [ \"$t $h\" = \"$want\" ]; then rm -f \"$f\" && echo removed; else echo \"changed $t $h\"; fi\n",
        lock = LOCK_PATH,
        want = crate::ssh::shell_quote(line),
    )
}

/// The lock file's line, taken apart: `EPOCH user@host pid N run ID (command)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockLine {
    /// The whole line, for the compare-and-remove.
    pub line: String,
    pub since_epoch: u64,
    /// `user@host`, as the holder wrote it.
    pub who: String,
    pub host: Option<String>,
    pub pid: Option<u32>,
    pub run_id: Option<String>,
    pub command: Option<String>,
}

impl LockLine {
    pub fn parse(line: &str) -> Option<LockLine> {
        let line = line.trim_end();
        let (epoch, owner) = line.split_once(' ')?;
        let since_epoch = epoch.parse().ok()?;
        let words: Vec<&str> = owner.split(' ').collect();
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
                .map(|w| w.to_string())
        };
        let who = words.first().copied().unwrap_or_default().to_owned();
        let command = owner
            .rfind(" (")
            .filter(|_| owner.ends_with(')'))
            .map(|i| owner[i + 2..owner.len() - 1].to_owned());
        Some(LockLine {
            line: line.to_owned(),
            since_epoch,
            host: who.split_once('@').map(|(_, host)| host.to_owned()),
            who,
            pid: after("pid").and_then(|p| p.parse().ok()),
            run_id: after("run"),
            command,
        })
    }

    /// Whether its holder ran on this workstation and its pid runs no edgeops here any more.
    pub fn holder_is_gone(&self, here: &Workstation) -> bool {
        self.host.as_deref() == Some(here.hostname.as_str())
            && self
                .pid
                .is_some_and(|pid| !here.edgeops_pids.contains(&pid))
    }
}

/// A fresh id for one run: the lock's owner names it, and only that run may release the lock.
pub(super) fn new_run_id() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap_or_default();
    hex::encode(bytes)
}

/// The lock's owner text, `user@workstation pid N run ID` plus what holds it (`(edgeops reset)`),
/// which is what a refused run is told.
pub(super) fn owner(run_id: &str, tag: Option<&str>) -> String {
    let mut owner = format!(
        "{}@{} pid {} run {run_id}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        local_hostname(),
        std::process::id(),
    );
    if let Some(tag) = tag {
        owner.push_str(&format!(" ({tag})"));
    }
    // `$USER` is whatever the environment says: only text goes into the lock file.
    crate::sanitize::clean_line(&owner).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_answers() {
        assert_eq!(parse_lock_answer("acquired\n"), Some(LockAnswer::Acquired));
        assert_eq!(
            parse_lock_answer("held 12 alice@ws pid 7 run ab12\n"),
            Some(LockAnswer::Held {
                age: 12,
                holder: "alice@ws pid 7 run ab12".into()
            })
        );
        assert_eq!(parse_lock_answer("garbage"), None);
    }

    /// Runs the acquire script for real, on a private lock path.
    fn acquire_locally(
        lock: &std::path::Path,
        owner: &str,
        workstation: &Workstation,
    ) -> Option<LockAnswer> {
        let script = lock_acquire_script_for(owner, Duration::from_secs(600), workstation)
            .replace(LOCK_PATH, lock.to_str().unwrap());
        let out = crate::shell::run_locally(&script, b"");
        parse_lock_answer(&String::from_utf8_lossy(&out.stdout))
    }

    #[test]
    fn a_lock_whose_holder_is_gone_from_this_workstation_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock");
        let here = Workstation {
            hostname: "ws-1".into(),
            edgeops_pids: vec![100, 4242],
        };
        let write = |holder: &str| {
            std::fs::write(
                &lock,
                format!(
                    "{} {holder}\n",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                ),
            )
            .unwrap()
        };
        // Its pid still runs edgeops here: held.
        write("bob@ws-1 pid 4242 run aa (edgeops up)");
        assert!(matches!(
            acquire_locally(&lock, "me@ws-1 pid 1 run bb", &here),
            Some(LockAnswer::Held { .. })
        ));
        // Same pid, another workstation (`ws-10` is not `ws-1`): not ours to judge, held.
        write("bob@ws-10 pid 77 run aa");
        assert!(matches!(
            acquire_locally(&lock, "me@ws-1 pid 1 run bb", &here),
            Some(LockAnswer::Held { .. })
        ));
        // Gone: taken over, and said so with the old holder.
        write("bob@ws-1 pid 77 run aa (edgeops reset)");
        assert_eq!(
            acquire_locally(&lock, "me@ws-1 pid 1 run bb", &here),
            Some(LockAnswer::AcquiredFromGone {
                age: 0,
                holder: "bob@ws-1 pid 77 run aa (edgeops reset)".into()
            })
        );
        assert!(
            std::fs::read_to_string(&lock)
                .unwrap()
                .ends_with(" me@ws-1 pid 1 run bb\n")
        );
    }

    #[test]
    fn a_lock_this_process_holds_is_handed_on_and_one_of_another_pid_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock");
        let here = Workstation {
            hostname: "ws-1".into(),
            edgeops_pids: vec![1, 11],
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // `replace` (pid 1) holds it and runs `up` in the same process: up takes it on.
        std::fs::write(
            &lock,
            format!("{now} me@ws-1 pid 1 run aa (edgeops replace)\n"),
        )
        .unwrap();
        assert_eq!(
            acquire_locally(&lock, "me@ws-1 pid 1 run bb (edgeops up)", &here),
            Some(LockAnswer::Acquired)
        );
        assert!(
            std::fs::read_to_string(&lock)
                .unwrap()
                .ends_with(" me@ws-1 pid 1 run bb (edgeops up)\n")
        );
        // pid 11 is another live edgeops: `pid 1` is not a prefix of it, held.
        std::fs::write(
            &lock,
            format!("{now} me@ws-1 pid 11 run aa (edgeops replace)\n"),
        )
        .unwrap();
        assert!(matches!(
            acquire_locally(&lock, "me@ws-1 pid 1 run bb (edgeops up)", &here),
            Some(LockAnswer::Held { .. })
        ));
    }

    #[test]
    fn lock_scripts_quote_the_owner() {
        let script = lock_acquire_script("bob@ws pid 1 run x'y", Duration::from_secs(60));
        assert!(script.contains(r"me='bob@ws pid 1 run x'\''y'"));
        assert!(script.contains("stale=60"));
    }

    /// The release script, run for real: another run's lock stays, this run's goes.
    #[test]
    fn release_removes_only_this_runs_lock() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("lock");
        let release = |run: &str| {
            let script = lock_release_script(run).replace(LOCK_PATH, lock.to_str().unwrap());
            assert!(crate::shell::run_locally(&script, b"").status.success());
        };
        std::fs::write(&lock, "1700000000 bob@ws pid 7 run ab12 (edgeops up)\n").unwrap();
        release("cd34");
        assert!(lock.exists());
        release("ab12");
        assert!(!lock.exists());
    }
}
