//! The cluster lock's meaning for a run that takes it (`up`, `reset`, `upgrade`): taken, taken
//! over from a stale holder (with a note to show), or held by another run (an error naming it).
//! The scripts that take and release it live in `remote`; this module only interprets the answer.

use std::time::Duration;

use super::remote::{self, LockAnswer};
use crate::ssh::ExecRequest;

/// How long releasing the lock may take, also after Ctrl-C.
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(15);

/// The command that gives `run_id`'s lock back. It runs also after Ctrl-C: the unlock is quick,
/// and a lock left behind blocks the next run until it goes stale.
pub fn release_request(run_id: &str) -> ExecRequest {
    ExecRequest::new(remote::lock_release_script(run_id))
        .sudo(true)
        .ignore_cancel(true)
        .timeout(UNLOCK_TIMEOUT)
}

/// Another edgeops run (`up`, `reset` or `upgrade`) holds the cluster's lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "cluster {cluster} is locked by another edgeops run: {holder}, since {} ago (lock file {lock} on {host}); \
     wait for it to finish, or remove the file if that run died (locks older than {} are taken over)",
    humantime::format_duration(*age),
    humantime::format_duration(*stale_after),
    lock = remote::LOCK_PATH
)]
pub struct LockHeld {
    pub cluster: String,
    pub host: String,
    pub holder: String,
    pub age: Duration,
    pub stale_after: Duration,
}

/// A fresh id for one run: the lock's owner names it, and only that run may release the lock.
pub fn new_run_id() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap_or_default();
    hex::encode(bytes)
}

/// The lock's owner text, `user@workstation pid N run ID` plus what holds it (`(edgeops reset)`),
/// which is what a refused run is told.
pub fn owner(run_id: &str, tag: Option<&str>) -> String {
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

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Settle the lock script's answer on `host`: `Ok(None)` taken, `Ok(Some(note))` taken over from
/// a stale holder (the note says whose and how old), `Err` held by a live run.
pub fn settle(
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
        assert!(message.contains(remote::LOCK_PATH), "{message}");
        assert!(message.contains("on pi-01"), "{message}");
        assert!(message.contains("older than 30m"), "{message}");
    }
}
