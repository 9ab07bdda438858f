//! Folding the first server's steps into fewer round trips: the `up` lock taken in the same exec
//! as its facts and released in the same exec as the run's last command that may change
//! anything; the API read right after its install; the node list with the API read (`up`) or
//! with the facts (`status`). Each saves one SSH exec (~2 RTTs) on the first server, which is on
//! every run's critical path.
//!
//! The lock and unlock scripts are `host::lock`'s own (the ones `reset` runs), run in subshells, so
//! the semantics (atomic creation, stale takeover, holder text, only this run's lock removed)
//! are exactly theirs.

use std::time::Duration;

use crate::host::lock;
use crate::k3s::remote;

/// Marks the lock answer in [`facts_with_lock`] output.
const LOCK_MARK: &str = "--- edgeops-lock";
/// Marks the facts in [`facts_with_lock`] output.
const FACTS_MARK: &str = "--- edgeops-facts";
/// The last stdout line of a script built by [`then_release`], once the release part ran.
pub const RELEASED_MARK: &str = "--- edgeops-unlocked";
/// Marks where the API read starts in [`then_api`] output.
pub const API_MARK: &str = "--- edgeops-api";
/// Marks the node list appended to the API read by [`api_with_nodes`].
pub const NODES_MARK: &str = "--- nodes";

/// Take the lock, then gather the facts, in one script run with sudo (the lock lives in /run).
/// The lock comes first so it is held before anything else happens; the facts follow whatever
/// the answer (they change nothing). Under sudo the facts report the login user's uid
/// (`SUDO_UID`), as the plain facts script would.
pub fn facts_with_lock(facts_script: &str, owner: &str, stale_after: Duration) -> String {
    format!(
        "echo '{LOCK_MARK}'\n(\n{lock})\necho '{FACTS_MARK}'\n(\n{facts_script})\n",
        lock = lock::lock_acquire_script(owner, stale_after),
    )
}

/// Split [`facts_with_lock`] output into the lock answer (`None`: the lock part never ran, e.g.
/// sudo failed) and the facts text.
pub fn split_facts_with_lock(stdout: &str) -> (Option<lock::LockAnswer>, &str) {
    let Some(rest) = after_line(stdout, LOCK_MARK) else {
        return (None, "");
    };
    let (lock, facts) = match rest.find(&format!("{FACTS_MARK}\n")) {
        Some(at) => (&rest[..at], &rest[at + FACTS_MARK.len() + 1..]),
        None => (rest, ""),
    };
    (lock::parse_lock_answer(lock), facts)
}

/// `script`, then the release of this run's lock whatever `script`'s outcome, keeping its exit
/// status. `script` runs in a subshell, so its own `exit` or `set -e` cannot skip the release.
/// Stdout ends with [`RELEASED_MARK`] once the release ran; strip it with [`take_released`].
pub fn then_release(script: &str, run_id: &str) -> String {
    format!(
        "(\n{script}\n)\nrc=$?\n(\n{release})\necho '{RELEASED_MARK}'\nexit $rc\n",
        release = lock::lock_release_script(run_id),
    )
}

/// Remove [`RELEASED_MARK`] from the end of `stdout`; whether it was there (the lock released).
pub fn take_released(stdout: &mut Vec<u8>) -> bool {
    let mark = format!("{RELEASED_MARK}\n");
    if stdout.ends_with(mark.as_bytes()) {
        stdout.truncate(stdout.len() - mark.len());
        true
    } else {
        false
    }
}

/// The API read followed by the node list (whatever `kubectl` says; a failure there only
/// means verify polls again), so a run with nothing to install between the two saves a round
/// trip.
pub fn api_with_nodes(api_script: &str) -> String {
    format!(
        "{api_script}echo '{NODES_MARK}'\n{} 2>/dev/null || true\n",
        remote::NODES_COMMAND
    )
}

/// Split [`api_with_nodes`] output at [`NODES_MARK`]: the API part and the node list, if any.
pub fn split_nodes(stdout: &str) -> (&str, Option<&str>) {
    let mark = format!("{NODES_MARK}\n");
    if stdout.starts_with(&mark) {
        return ("", Some(&stdout[mark.len()..]));
    }
    match stdout.find(&format!("\n{mark}")) {
        Some(at) => (&stdout[..=at], Some(&stdout[at + 1 + mark.len()..])),
        None => (stdout, None),
    }
}

/// `own` (the first server's install or restart), then, only if it succeeded, the API read,
/// in one script: the API wait starts on the host the moment the install ends, without a round
/// trip back to the workstation. A failed `own` ends the script with its status before
/// [`API_MARK`], so the two failures stay apart.
pub fn then_api(own: &str, api_script: &str) -> String {
    // Not `( own ) || exit`: on the left of `||` the shell ignores `set -e` inside `own`.
    format!("(\n{own}\n)\nrc=$?\n[ \"$rc\" = 0 ] || exit \"$rc\"\necho '{API_MARK}'\n{api_script}")
}

/// Split [`then_api`] output: what `own` printed, and the API read's output when it ran.
pub fn split_api(stdout: &str) -> (&str, Option<&str>) {
    let mut offset = 0;
    for line in stdout.split_inclusive('\n') {
        if line.trim_end() == API_MARK {
            return (&stdout[..offset], Some(&stdout[offset + line.len()..]));
        }
        offset += line.len();
    }
    (stdout, None)
}

/// `status`: the facts, then the node list when a k3s server unit is there (whatever `kubectl`
/// says: a list that does not parse is asked for again on its own, for the reason), in one
/// script run with sudo (the admin kubeconfig is 0600).
pub fn facts_with_nodes(facts_script: &str) -> String {
    format!(
        "echo '{FACTS_MARK}'\n(\n{facts_script})\n\
         if [ -f /etc/systemd/system/k3s.service ]; then\n\
         echo '{NODES_MARK}'\n{} 2>/dev/null || true\nfi\n",
        remote::NODES_COMMAND
    )
}

/// Split [`facts_with_nodes`] output: the facts and the node list (when read); `None` when
/// the script never ran (sudo refused).
pub fn split_facts_with_nodes(stdout: &str) -> Option<(&str, Option<&str>)> {
    Some(split_nodes(after_line(stdout, FACTS_MARK)?))
}

/// The text after the line `mark` (which must be a whole line).
fn after_line<'a>(text: &'a str, mark: &str) -> Option<&'a str> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        offset += line.len();
        if line.trim_end() == mark {
            return Some(&text[offset..]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use lock::LockAnswer;

    fn sh(script: &str) -> (String, i32) {
        let out = crate::shell::run_locally(script, b"");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    }

    #[test]
    fn facts_and_lock_answers_split() {
        let out = "--- edgeops-lock\nheld 12 alice@ws pid 7 run ab12\n--- edgeops-facts\narch=x86_64\nuid=0\n";
        let (lock, facts) = split_facts_with_lock(out);
        assert_eq!(
            lock,
            Some(LockAnswer::Held {
                age: 12,
                holder: "alice@ws pid 7 run ab12".into()
            })
        );
        assert_eq!(facts, "arch=x86_64\nuid=0\n");
        // sudo failed before the script ran: no answer, no facts.
        assert_eq!(split_facts_with_lock(""), (None, ""));
    }

    #[test]
    fn facts_with_lock_runs_the_lock_script_first_and_keeps_its_semantics() {
        let script = facts_with_lock(
            "kv() { echo \"$1=$2\"; }\nkv arch x\n",
            "me run 1",
            Duration::from_secs(60),
        );
        let lock = lock::lock_acquire_script("me run 1", Duration::from_secs(60));
        assert!(script.contains(&lock), "{script}");
        assert!(script.find(LOCK_MARK) < script.find(FACTS_MARK));
        // The lock script's `exit 0` must not end the whole script: run it for real on a
        // private path.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let script = script.replace(lock::LOCK_PATH, path.to_str().unwrap());
        let (out, rc) = sh(&script);
        assert_eq!(rc, 0);
        let (answer, facts) = split_facts_with_lock(&out);
        assert_eq!(answer, Some(LockAnswer::Acquired));
        assert_eq!(facts, "arch=x\n");
        let (again, _) = sh(&script);
        assert!(matches!(
            split_facts_with_lock(&again).0,
            Some(LockAnswer::Held { ref holder, .. }) if holder == "me run 1"
        ));
    }

    #[test]
    fn release_runs_whatever_the_script_did_and_keeps_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let p = path.to_str().unwrap();
        for (body, want) in [
            ("echo out", 0),
            ("set -e; false; echo never", 1),
            ("exit 3", 3),
        ] {
            std::fs::write(&path, "1 me@ws pid 1 run r1\n").unwrap();
            let script = then_release(body, "r1").replace(lock::LOCK_PATH, p);
            let (out, rc) = sh(&script);
            assert_eq!(rc, want, "{body}: {out}");
            assert!(!path.exists(), "{body}: lock left behind");
            let mut bytes = out.into_bytes();
            assert!(take_released(&mut bytes), "{body}");
            assert!(!String::from_utf8(bytes).unwrap().contains(RELEASED_MARK));
        }
        // Another run's lock stays.
        std::fs::write(&path, "1 other@ws pid 2 run r2\n").unwrap();
        let (out, _) = sh(&then_release("true", "r1").replace(lock::LOCK_PATH, p));
        assert!(path.exists());
        assert!(take_released(&mut out.into_bytes()));
        assert!(!take_released(&mut b"no mark\n".to_vec()));
    }

    #[test]
    fn the_api_read_runs_only_after_the_install_succeeded() {
        let (out, rc) = sh(&then_api(
            "echo installed",
            "echo '--- kubeconfig'\necho k\n",
        ));
        assert_eq!(rc, 0);
        assert_eq!(
            split_api(&out),
            ("installed\n", Some("--- kubeconfig\nk\n"))
        );
        let (out, rc) = sh(&then_api(
            "set -eu\necho half\nfalse\necho never",
            "echo api\n",
        ));
        assert_eq!(rc, 1);
        assert_eq!(split_api(&out), ("half\n", None));
        // Under `then_release` too (a subshell in a subshell), `set -e` still stops `own`.
        let (out, rc) = sh(&then_release(
            &then_api("set -e\nfalse\necho never", "echo api\n"),
            "r1",
        ));
        assert_eq!(rc, 1);
        assert_eq!(split_api(&out).1, None);
        assert!(!out.contains("never"));
        let (out, rc) = sh(&then_api("true", "exit 3\n"));
        assert_eq!((rc, split_api(&out)), (3, ("", Some(""))));
    }

    #[test]
    fn status_reads_facts_and_nodes_in_one_script() {
        let script = facts_with_nodes("echo arch=x\n");
        assert!(script.contains("k3s kubectl get nodes -o json"));
        let (out, rc) = sh(&script);
        assert_eq!(rc, 0);
        // No k3s unit here (or in the test's sandbox): facts only.
        if !std::path::Path::new("/etc/systemd/system/k3s.service").exists() {
            assert_eq!(split_facts_with_nodes(&out), Some(("arch=x\n", None)));
        }
        let out = "--- edgeops-facts\narch=x\n--- nodes\n{}\n";
        assert_eq!(
            split_facts_with_nodes(out),
            Some(("arch=x\n", Some("{}\n")))
        );
        assert_eq!(split_facts_with_nodes(""), None);
    }

    #[test]
    fn api_and_nodes_split() {
        let script = api_with_nodes(&remote::api_script(
            Duration::from_secs(1),
            remote::ApiRead {
                token: false,
                kubeconfig: true,
            },
        ));
        assert!(script.ends_with("k3s kubectl get nodes -o json 2>/dev/null || true\n"));
        let out = "--- kubeconfig\napiVersion: v1\n--- nodes\n{\"kind\": \"List\"}\n";
        let (api, nodes) = split_nodes(out);
        assert_eq!(api, "--- kubeconfig\napiVersion: v1\n");
        assert_eq!(nodes, Some("{\"kind\": \"List\"}\n"));
        assert_eq!(
            remote::parse_api_output(api).1.as_deref(),
            Some("apiVersion: v1\n")
        );
        assert_eq!(split_nodes("--- nodes\n{}\n"), ("", Some("{}\n")));
        assert_eq!(split_nodes("--- token\nx\n"), ("--- token\nx\n", None));
    }
}
