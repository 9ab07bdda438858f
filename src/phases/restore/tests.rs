//! Unit tests of the restore phase lists over scripted hosts (no root, no lab): the snapshot's
//! sha256 checked before any change, the first server reset before anyone, the other servers
//! re-joined one at a time, a failed server stopping the roll with a reason for the rest, the
//! agents restarted in one window, the dry run changing nothing, Ctrl-C releasing the lock.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::scripted::{Call, Reply, ScriptedRemote};
use crate::engine::{FailureKind, PhaseResult, Quiet};
use crate::inventory::Inventory;
use crate::k3s::snapshot::sha256_hex;
use crate::phases::tests::{Hosts, LOCK, UNLOCK, script_of, slow};

use super::*;

fn inventory() -> Inventory {
    crate::k3s::test_inventory::lab_inventory(3, 2)
}

// What identifies each script the restore sends (a line only that script has); the more
// specific first: several scripts start k3s.
const MARKERS: [(&str, &str); 11] = [
    (LOCK, "lock"),
    (UNLOCK, "unlock"),
    ("for u in k3s k3s-agent", "survey"),
    ("systemctl stop \"$unit\"", "stop"),
    (".edgeops-upload.", "upload"),
    ("--cluster-reset-restore-path", "reset"),
    ("node-password.k3s", "forget"),
    ("mv \"$db\"", "rejoin"),
    ("systemctl restart k3s-agent", "agent"),
    ("--for=condition=Ready", "wait"),
    ("systemctl start k3s", "start"),
];

fn what(call: &Call) -> &'static str {
    script_of(call, &MARKERS)
}

const ALL: [&str; 5] = ["s1", "s2", "s3", "a1", "a2"];

/// A host with k3s installed and running in its role, answering the restore's scripts (after
/// the test's own rules).
fn host(name: &str, remote: ScriptedRemote) -> ScriptedRemote {
    let unit = if name.starts_with('a') {
        "k3s-agent"
    } else {
        "k3s"
    };
    remote
        .on(LOCK, Reply::ok("acquired\n"))
        .on(
            "for u in k3s k3s-agent",
            Reply::ok(format!("k3s yes\nunit {unit}\nactive yes\n")),
        )
        .on(
            "--cluster-reset-restore-path",
            slow(Reply::ok(
                "Managed etcd cluster membership has been reset\n",
            )),
        )
        .on("mv \"$db\"", slow(Reply::ok("moved db\n")))
        .on("systemctl restart k3s-agent", slow(Reply::ok("")))
}

fn setup() -> Hosts {
    Hosts::new(&ALL, host, &MARKERS)
}

fn options() -> RestoreOptions {
    RestoreOptions {
        api_timeout: Duration::from_secs(60),
        ready_timeout: Duration::from_secs(60),
    }
}

async fn survey(hosts: &Hosts) -> Restore {
    Restore::start(hosts.engine(Arc::new(Quiet)), &inventory(), options())
        .await
        .unwrap()
}

/// `host:script` of every call after the survey, in start order.
fn sequence(hosts: &Hosts) -> Vec<String> {
    hosts.sequence(&["lock", "survey"], ":")
}

fn snapshot() -> Snapshot {
    let bytes = b"etcd snapshot".to_vec();
    Snapshot {
        file: "pre-s1-1".into(),
        sha256: sha256_hex(&bytes),
        bytes,
    }
}

fn results(report: &RestoreReport) -> Vec<(&str, String)> {
    report
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.result_text()))
        .collect()
}

#[tokio::test]
async fn the_first_server_is_reset_first_then_servers_one_at_a_time_then_agents_in_one_window() {
    let setup = setup();
    let restore = survey(&setup).await;
    assert!(restore.problems().is_empty(), "{:?}", restore.problems());
    let phases: Vec<&str> = restore.plan().iter().map(|p| p.phase).collect();
    assert_eq!(
        phases,
        ["first server", "servers", "servers", "agents", "agents"]
    );
    let report = restore.execute(snapshot()).await;
    assert_eq!(
        results(&report),
        ALL.iter()
            .map(|h| (*h, "restored".to_owned()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        report.hosts[0].detail,
        "restored: Managed etcd cluster membership has been reset"
    );
    let sequence = sequence(&setup);
    // Every server stopped before the first server's upload and reset; the rest after it.
    let reset_at = sequence.iter().position(|c| c == "s1:reset").unwrap();
    assert_eq!(sequence[reset_at - 1], "s1:upload", "{sequence:?}");
    let stops: Vec<usize> = (0..sequence.len())
        .filter(|&i| sequence[i].ends_with(":stop"))
        .collect();
    assert_eq!(stops.len(), 3, "{sequence:?}");
    assert!(stops.iter().all(|&i| i < reset_at), "{sequence:?}");
    let first_ready = reset_at + 1;
    assert_eq!(sequence[first_ready], "s1:wait", "{sequence:?}");
    assert!(
        sequence[..first_ready]
            .iter()
            .all(|c| c.ends_with(":stop") || c.starts_with("s1:")),
        "someone else went before the first server was back: {sequence:?}"
    );
    // The peers one at a time, each waited Ready before the next starts.
    assert_eq!(
        &sequence[first_ready + 1..first_ready + 7],
        [
            "s1:forget",
            "s2:rejoin",
            "s1:wait",
            "s1:forget",
            "s3:rejoin",
            "s1:wait"
        ],
        "{sequence:?}"
    );
    let rejoins = setup.calls_named("rejoin");
    assert!(!rejoins[0].overlaps(&rejoins[1]));
    // The agents after every server, in one window.
    let agents = setup.calls_named("agent");
    assert_eq!(agents.len(), 2);
    assert!(
        agents[0].overlaps(&agents[1]),
        "the agents share one window"
    );
    assert!(rejoins.iter().all(|r| r.ended <= agents[0].started));
    assert_eq!(setup.journal.calls().last().map(what), Some("unlock"));
    let titles: Vec<&str> = report.phases.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(titles, [&SURVEY[..], &RESTORE[..]].concat());
    // The snapshot's bytes went to the first server only, 0600.
    let uploads = setup.calls_named("upload");
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].stdin.as_deref(), Some(&b"etcd snapshot"[..]));
    assert!(uploads[0].command.contains("600"));
}

#[tokio::test]
async fn a_snapshot_whose_bytes_do_not_match_its_sha256_changes_nothing() {
    let setup = setup();
    let restore = survey(&setup).await;
    let mut tampered = snapshot();
    tampered.bytes.push(b'!');
    let report = restore.execute(tampered).await;
    assert_eq!(sequence(&setup), ["s1:unlock"]);
    assert!(report.hosts.iter().all(|h| h.is_failure()
        && h.failure == Some(FailureKind::Refused)
        && h.detail.contains("the manifest says")));
}

#[tokio::test]
async fn a_failed_server_stops_the_roll_and_the_rest_are_skipped_with_the_reason() {
    let setup = setup().on("s2", "mv \"$db\"", Reply::fail(3, "k3s did not start"));
    let report = survey(&setup).await.execute(snapshot()).await;
    assert_eq!(
        results(&report),
        [
            ("s1", "restored".to_owned()),
            ("s2", "failed (exit 3)".to_owned()),
            ("s3", "skipped".to_owned()),
            ("a1", "skipped".to_owned()),
            ("a2", "skipped".to_owned()),
        ]
    );
    assert!(report.hosts[1].detail.contains("k3s did not start"));
    assert_eq!(
        report.hosts[2].detail,
        "not started: server s2 did not rejoin, so the roll stopped (etcd quorum)"
    );
    assert!(setup.calls_named("agent").is_empty());
    assert!(!sequence(&setup).contains(&"s3:rejoin".to_owned()));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["hosts"][1]["failure"], "exited");
    assert_eq!(json["hosts"][1]["exit_code"], 3);
    assert_eq!(json["hosts"][2]["failure"], "skipped");
    assert!(json["hosts"][0].get("failure").is_none());
}

#[tokio::test]
async fn a_failed_first_server_starts_no_one_else() {
    let setup = setup().on(
        "s1",
        "--cluster-reset-restore-path",
        Reply::fail(5, "edgeops: k3s --cluster-reset failed; its last lines:"),
    );
    let report = survey(&setup).await.execute(snapshot()).await;
    assert_eq!(report.hosts[0].result_text(), "failed (exit 5)");
    assert!(
        report.hosts[1..]
            .iter()
            .all(|h| h.failure == Some(FailureKind::Skipped)
                && h.detail == "not started: the first server was not restored")
    );
    assert!(setup.calls_named("rejoin").is_empty() && setup.calls_named("agent").is_empty());
    assert_eq!(setup.journal.calls().last().map(what), Some("unlock"));
}

#[tokio::test]
async fn a_server_that_cannot_be_stopped_ends_it_before_anything_is_restored() {
    let setup = setup().on("s3", "systemctl stop \"$unit\"", Reply::fail(1, "denied"));
    let report = survey(&setup).await.execute(snapshot()).await;
    assert!(setup.calls_named("upload").is_empty() && setup.calls_named("reset").is_empty());
    // The two stopped servers are started again.
    let mut started: Vec<String> = setup
        .calls_named("start")
        .iter()
        .map(|c| c.host.clone())
        .collect();
    started.sort();
    assert_eq!(started, ["s1", "s2"]);
    assert_eq!(report.hosts[2].failure, Some(FailureKind::Exited));
    assert!(
        report.hosts[0]
            .detail
            .contains("another server could not be stopped")
    );
    assert_eq!(setup.journal.calls().last().map(what), Some("unlock"));
}

#[tokio::test]
async fn the_dry_run_changes_nothing_and_says_what_each_phase_would_do() {
    let setup = setup();
    let phases = survey(&setup).await.dry_run(snapshot()).await;
    assert_eq!(sequence(&setup), ["s1:unlock"]);
    let planned: Vec<(&str, usize)> = phases
        .iter()
        .filter_map(|p| match &p.result {
            PhaseResult::Planned(lines) => Some((p.phase.as_str(), lines.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        planned,
        [
            ("stop servers", 3),
            ("first server", 1),
            ("servers", 2),
            ("agents", 2)
        ]
    );
}

#[tokio::test]
async fn ctrl_c_mid_restore_releases_the_lock() {
    let setup = setup().on("s2", "mv \"$db\"", Reply::Hang);
    let restore = survey(&setup).await;
    let cancel = setup.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        cancel.cancel();
    });
    let report = restore.execute(snapshot()).await;
    assert_eq!(report.hosts[1].failure, Some(FailureKind::Cancelled));
    assert!(report.hosts[2..].iter().all(|h| h.is_failure()));
    assert_eq!(setup.journal.calls().last().map(what), Some("unlock"));
}

#[tokio::test]
async fn a_host_without_k3s_in_its_role_is_a_problem_before_anything_changes() {
    let setup = setup().on(
        "a2",
        "for u in k3s k3s-agent",
        Reply::ok("k3s no\nunit none\nactive no\n"),
    );
    let restore = survey(&setup).await;
    let problems = restore.problems();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("a2: k3s is not installed as k3s-agent.service"));
    restore.abort().await;
    assert_eq!(sequence(&setup), ["s1:unlock"]);
}
