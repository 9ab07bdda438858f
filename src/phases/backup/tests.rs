//! Unit tests of the backup phases over a scripted first server: a save fetched, kept 0600 with
//! its sha256 in the manifest and the snapshot's bytes never in the run log; pruned here and
//! there; a short copy refused; k3s's sqlite answer refused with what to do; a list.

use std::sync::Arc;

use crate::engine::FailureKind;
use crate::engine::runlog::{Redactor, RunLog};
use crate::engine::scripted::{Journal, Reply};
use crate::inventory::Inventory;
use crate::k3s::snapshot::{Manifest, sha256_hex};
use crate::phases::tests::{first_server, quiet_log};

use super::*;

fn inventory() -> Inventory {
    crate::k3s::test_inventory::lab_inventory(3, 0)
}

const SAVE_SCRIPT: &str = "etcd-snapshot save --name";
const FETCH_SCRIPT: &str = "cat -- \"$path\"";
const PRUNE_SCRIPT: &str = "etcd-snapshot prune";
const LIST_SCRIPT: &str = "k3s etcd-snapshot ls 2>&1";
const SNAPSHOT: &str = "secret etcd bytes";

fn listing(size: usize) -> String {
    format!(
        "Name Location Size Created\n\
         pre-s1-100 file:///var/lib/rancher/k3s/server/db/snapshots/pre-s1-100 {size} 2026-12-04T10:00:00Z\n"
    )
}

/// A save whose snapshot command answers `reply` (no run log): its outcome, and what ran.
async fn save_answering(reply: Reply) -> (Outcome, Arc<Journal>) {
    let journal = Journal::new();
    let engine = first_server(&journal, vec![(SAVE_SCRIPT, reply)], quiet_log());
    let dir = tempfile::tempdir().unwrap();
    let outcome = Backup::run(engine, &inventory(), dir.path().into(), saving(None))
        .await
        .unwrap();
    (outcome, journal)
}

fn saving(prune: Option<usize>) -> Request {
    Request::Save {
        name: "pre".into(),
        prune,
    }
}

#[tokio::test]
async fn a_snapshot_is_taken_copied_recorded_and_pruned_without_its_bytes_in_the_log() {
    let journal = Journal::new();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("backups");
    let logs = tempfile::tempdir().unwrap();
    let log = RunLog::in_dir(logs.path(), Redactor::default());
    let save_answer = format!(
        "Snapshot pre-s1-100 saved.\n--- list\n{}",
        listing(SNAPSHOT.len())
    );
    let engine = first_server(
        &journal,
        vec![
            (SAVE_SCRIPT, Reply::ok(save_answer)),
            (FETCH_SCRIPT, Reply::ok(SNAPSHOT)),
            (PRUNE_SCRIPT, Reply::ok("Snapshot pre-s1-50 deleted.\n")),
        ],
        log,
    );
    let outcome = Backup::run(engine, &inventory(), dest.clone(), saving(Some(1)))
        .await
        .unwrap();
    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    let saved = outcome.saved.unwrap();
    assert_eq!(saved.entry.sha256, sha256_hex(SNAPSHOT.as_bytes()));
    assert_eq!(std::fs::read(&saved.local).unwrap(), SNAPSHOT.as_bytes());
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(std::path::Path::new(&saved.local)), 0o600);
    assert_eq!(mode(&dest), 0o700);
    assert_eq!(Manifest::load(&dest).unwrap().snapshots.len(), 1);
    assert_eq!(outcome.pruned_server, ["pre-s1-50"]);
    let order: Vec<String> = journal
        .calls()
        .iter()
        .map(|c| c.command.lines().last().unwrap_or("").to_owned())
        .collect();
    assert_eq!(journal.calls().len(), 3, "{order:?}");
    for file in walk(logs.path()) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains(SNAPSHOT),
            "{} holds the snapshot",
            file.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_copy_shorter_than_k3s_lists_is_refused_and_nothing_is_kept() {
    let journal = Journal::new();
    let dir = tempfile::tempdir().unwrap();
    let save_answer = format!("Snapshot pre-s1-100 saved.\n--- list\n{}", listing(999));
    let engine = first_server(
        &journal,
        vec![
            (SAVE_SCRIPT, Reply::ok(save_answer)),
            (FETCH_SCRIPT, Reply::ok(SNAPSHOT)),
        ],
        quiet_log(),
    );
    let outcome = Backup::run(engine, &inventory(), dir.path().join("b"), saving(Some(1)))
        .await
        .unwrap();
    let failure = outcome.failure.unwrap();
    assert!(
        failure.reason.contains("but k3s lists it with 999 bytes"),
        "{failure}"
    );
    assert!(outcome.saved.is_none() && !dir.path().join("b").exists());
    assert!(journal.matching(PRUNE_SCRIPT).is_empty());
}

#[tokio::test]
async fn k3s_on_sqlite_is_refused_with_what_to_do_instead() {
    let (outcome, journal) = save_answering(Reply::Exit {
        code: 1,
        stdout: "Error: see server log for details: etcd datastore disabled\n".into(),
        stderr: String::new(),
    })
    .await;
    let failure = outcome.failure.unwrap();
    assert_eq!(failure.kind, FailureKind::Refused);
    assert!(failure.reason.contains("state.db"), "{failure}");
    assert_eq!(journal.calls().len(), 1);
}

#[tokio::test]
async fn a_failed_save_is_exited_with_its_code_and_a_list_reads_the_table() {
    let (outcome, _) =
        save_answering(Reply::fail(4, "edgeops: k3s is not installed on this host")).await;
    let failure = outcome.failure.unwrap();
    assert_eq!(
        (failure.kind, failure.exit_code),
        (FailureKind::Exited, Some(4))
    );

    let journal = Journal::new();
    let engine = first_server(
        &journal,
        vec![(LIST_SCRIPT, Reply::ok(listing(12)))],
        quiet_log(),
    );
    let dir = tempfile::tempdir().unwrap();
    let outcome = Backup::run(engine, &inventory(), dir.path().into(), Request::List)
        .await
        .unwrap();
    let listed = outcome.listed.unwrap();
    assert_eq!(
        (listed[0].name.as_str(), listed[0].size),
        ("pre-s1-100", 12)
    );
}

#[test]
fn the_phase_lists_are_named() {
    assert_eq!(phases(&Request::List).titles(), LIST);
    assert_eq!(phases(&saving(None)).titles(), SAVE);
}
