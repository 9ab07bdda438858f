//! Unit tests of the reset phase lists over scripted hosts (no root, no lab): the order (agents
//! in one window, servers one at a time, the first server last), the quorum check before each
//! server that leaves, a failed server stopping the roll, an unreachable host failing alone, the
//! dry run changing nothing, and Ctrl-C releasing the lock.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::scripted::{Call, Reply, ScriptedRemote};
use crate::engine::{FailureKind, PhaseResult};
use crate::inventory::Inventory;
use crate::phases::outcome::Status;
use crate::phases::tests::{DELETE_NODE as DELETE, Hosts, LOCK, NODE_LIST, UNLOCK, slow};
use crate::phases::{Observer, Progress};

use super::*;

fn inventory() -> Inventory {
    crate::k3s::test_inventory::lab_inventory(3, 2)
}

// What identifies each script only reset sends (a line only that script has).
const SURVEY: &str = "\"${stamp_file:?}\"";
const UNINSTALL: &str = "removing k3s";

const MARKERS: [(&str, &str); 6] = [
    (LOCK, "lock"),
    (UNLOCK, "unlock"),
    (SURVEY, "survey"),
    (UNINSTALL, "uninstall"),
    (NODE_LIST, "nodes"),
    (DELETE, "delete"),
];

/// Which script a call ran.
fn what(call: &Call) -> &'static str {
    crate::phases::tests::script_of(call, &MARKERS)
}

fn node_list(names: &[&str]) -> String {
    let items: Vec<String> = names
        .iter()
        .map(|n| {
            format!(
                r#"{{"metadata":{{"name":"{n}","labels":{{"node-role.kubernetes.io/etcd":"true"}}}},"status":{{"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
            )
        })
        .collect();
    format!(r#"{{"kind":"List","items":[{}]}}"#, items.join(","))
}

/// A host with k3s installed in its role, answering every reset script (after the test's own
/// rules).
fn host(name: &str, remote: ScriptedRemote) -> ScriptedRemote {
    let agent = name.starts_with('a');
    let script = if agent {
        "/usr/local/bin/k3s-agent-uninstall.sh"
    } else {
        "/usr/local/bin/k3s-uninstall.sh"
    };
    let unit = if agent { "k3s-agent" } else { "k3s" };
    remote
        .on(LOCK, Reply::ok("acquired\n"))
        .on(
            SURVEY,
            Reply::ok(format!(
                "unit={unit}\nscript={script}\nversion=v1.31.4+k3s1\ndata=/var/lib/rancher/k3s\n"
            )),
        )
        // Slow enough that hosts running at once overlap in the journal.
        .on(UNINSTALL, slow(Reply::ok(format!("used={script}\n"))))
        .on(NODE_LIST, Reply::ok(node_list(&["s1", "s2", "s3"])))
        .on(DELETE, Reply::ok("deleted=s2\n"))
}

/// Records what a progress view without a terminal would print per host.
#[derive(Default)]
struct Lines(std::sync::Mutex<Vec<String>>);

impl Observer for Lines {
    fn event(&self, event: &Progress<'_>) {
        if let Progress::HostDone { host, detail, .. } = event {
            self.0.lock().unwrap().push(format!("{host}: {detail}"));
        }
    }
}

struct Setup {
    hosts: Hosts,
    lines: Arc<Lines>,
    kubeconfig_dir: tempfile::TempDir,
}

impl std::ops::Deref for Setup {
    type Target = Hosts;

    fn deref(&self) -> &Hosts {
        &self.hosts
    }
}

impl Setup {
    fn new() -> Setup {
        Setup {
            hosts: Hosts::new(&ALL, host, &MARKERS),
            lines: Arc::default(),
            kubeconfig_dir: tempfile::tempdir().unwrap(),
        }
    }

    fn on(mut self, host: &'static str, text: &'static str, reply: Reply) -> Setup {
        self.hosts = self.hosts.on(host, text, reply);
        self
    }

    fn options(&self) -> ResetOptions {
        ResetOptions {
            kubeconfig: KubeconfigEntry {
                path: self.kubeconfig_dir.path().join("config"),
                context: "lab".into(),
            },
            gitlab: None,
            drain: None,
        }
    }

    async fn survey(&self, selected: &[&str]) -> anyhow::Result<Reset> {
        let inventory = inventory();
        let selected: Vec<String> = selected.iter().map(|s| s.to_string()).collect();
        let scope = scope(&inventory, &selected)?;
        let engine = self.engine(self.lines.clone());
        Reset::start(engine, &inventory, scope, &selected, self.options()).await
    }

    fn uninstalls(&self) -> Vec<Call> {
        self.journal.matching(UNINSTALL)
    }
}

const ALL: [&str; 5] = ["s1", "s2", "s3", "a1", "a2"];

fn hosts_of(report: &ResetReport) -> Vec<(&str, Status)> {
    report
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.status))
        .collect()
}

#[tokio::test]
async fn a_cluster_reset_runs_agents_in_one_window_then_servers_one_at_a_time_the_first_last() {
    let setup = Setup::new();
    let reset = setup.survey(&ALL).await.unwrap();
    assert_eq!(reset.scope(), Scope::Cluster);
    let report = reset.execute().await;
    assert_eq!(
        hosts_of(&report),
        [
            ("a1", Status::Done),
            ("a2", Status::Done),
            ("s2", Status::Done),
            ("s3", Status::Done),
            ("s1", Status::Done)
        ]
    );
    let phases: Vec<&str> = report.hosts.iter().map(|h| h.phase).collect();
    assert_eq!(
        phases,
        ["agents", "agents", "servers", "servers", "first server"]
    );
    assert_eq!(
        report.hosts[0].method.as_deref(),
        Some("k3s-agent-uninstall.sh")
    );
    let uninstalls = setup.uninstalls();
    let order: Vec<&str> = uninstalls.iter().map(|c| c.host.as_str()).collect();
    let (agents, servers) = uninstalls.split_at(2);
    assert!(agents.iter().all(|c| c.host.starts_with('a')), "{order:?}");
    assert!(
        agents[0].overlaps(&agents[1]),
        "the agents share one window"
    );
    for agent in agents {
        for server in servers {
            assert!(
                agent.ended <= server.started,
                "{} ended after {} began: {order:?}",
                agent.host,
                server.host
            );
        }
    }
    for (i, a) in servers.iter().enumerate() {
        for b in &servers[i + 1..] {
            assert!(!a.overlaps(b), "{} and {} overlapped", a.host, b.host);
        }
    }
    assert_eq!(order.last(), Some(&"s1"), "{order:?}");
    let lines = setup.lines.0.lock().unwrap().clone();
    assert!(
        lines.contains(&"a1: reset (k3s-agent-uninstall.sh)".to_owned())
            && lines.contains(&"s1: reset (k3s-uninstall.sh)".to_owned()),
        "{lines:?}"
    );
    // The lock first, its release last, both on the first server; a whole-cluster reset reads
    // no etcd members (nothing stays to keep a quorum).
    let first = setup.calls_of("s1");
    assert_eq!(first, ["lock", "survey", "uninstall", "unlock"]);
    // The round trips per host, as the report counts them: the survey and the uninstall (the
    // first server also the lock and its release).
    let commands: Vec<u32> = report.hosts.iter().map(|h| h.commands).collect();
    assert_eq!(commands, [2, 2, 2, 2, 4]);
    assert_eq!(setup.journal.calls().first().map(what), Some("lock"));
    assert_eq!(setup.journal.calls().last().map(what), Some("unlock"));
    let titles: Vec<&str> = report.phases.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(titles, [&SURVEY_PHASES[..], &RESET[..]].concat());
    assert!(
        report
            .kubeconfig
            .as_deref()
            .unwrap()
            .contains("no such file")
    );
}

const SURVEY_PHASES: [&str; 2] = super::SURVEY;

#[tokio::test]
async fn servers_leaving_a_cluster_that_stays_are_checked_for_quorum_before_each() {
    let setup = Setup::new();
    let reset = setup.survey(&["s2", "s3"]).await.unwrap();
    assert_eq!(reset.scope(), Scope::Hosts);
    let report = reset.execute().await;
    assert_eq!(
        hosts_of(&report),
        [("s2", Status::Done), ("s3", Status::Done)]
    );
    // Through the first server: the whole sequence checked, then per server the members read
    // again and its Node (member) deleted before its uninstall; the Node objects once more
    // at the end.
    assert_eq!(
        setup.sequence(&["survey"], " "),
        [
            "s1 lock",
            "s1 nodes",
            "s1 nodes",
            "s1 delete",
            "s2 uninstall",
            "s1 nodes",
            "s1 delete",
            "s3 uninstall",
            "s1 delete",
            "s1 unlock"
        ]
    );
    assert!(
        setup.journal.matching(DELETE)[0]
            .command
            .starts_with("set -- s2\n")
    );
    assert!(
        setup.journal.matching(DELETE)[1]
            .command
            .starts_with("set -- s3\n")
    );
    assert!(
        setup.journal.matching(DELETE)[2]
            .command
            .starts_with("set -- s2 s3\n")
    );
}

#[tokio::test]
async fn a_quorum_that_would_break_is_refused_before_anything_changes() {
    // s3's member is down: taking s2 out leaves one healthy of two.
    let down = node_list(&["s1", "s2", "s3"]).replacen(
        r#""name":"s3","labels":{"node-role.kubernetes.io/etcd":"true"}},"status":{"conditions":[{"type":"Ready","status":"True"}]}"#,
        r#""name":"s3","labels":{"node-role.kubernetes.io/etcd":"true"}},"status":{"conditions":[{"type":"Ready","status":"Unknown"}]}"#,
        1,
    );
    let setup = Setup::new().on("s1", NODE_LIST, Reply::ok(down));
    let report = setup.survey(&["s2"]).await.unwrap().execute().await;
    let s2 = &report.hosts[0];
    assert_eq!(s2.status, Status::Failed);
    assert_eq!(s2.failure, Some(FailureKind::Refused));
    let reason = s2.reason.as_deref().unwrap();
    assert!(
        reason.contains("removing s2 would leave the embedded etcd without quorum")
            && reason.contains("s3 (down)"),
        "{reason}"
    );
    assert!(setup.uninstalls().is_empty());
    assert!(setup.journal.matching(DELETE).is_empty());
    assert_eq!(setup.calls_of("s1").last(), Some(&"unlock"));
    assert!(matches!(
        report
            .phases
            .iter()
            .find(|p| p.phase == "agents")
            .unwrap()
            .result,
        PhaseResult::NotReached(_)
    ));
}

#[tokio::test]
async fn a_failed_server_stops_the_roll_and_the_rest_are_skipped_with_the_reason() {
    let setup = Setup::new().on(
        "s2",
        UNINSTALL,
        Reply::Exit {
            code: 1,
            stdout: "used=/usr/local/bin/k3s-uninstall.sh\nremaining=unit k3s\n".into(),
            stderr: "k3s-uninstall.sh: cannot stop k3s\n".into(),
        },
    );
    let report = setup.survey(&ALL).await.unwrap().execute().await;
    assert_eq!(
        hosts_of(&report),
        [
            ("a1", Status::Done),
            ("a2", Status::Done),
            ("s2", Status::Failed),
            ("s3", Status::Skipped),
            ("s1", Status::Skipped)
        ]
    );
    let s2 = &report.hosts[2];
    assert_eq!(s2.failure, Some(FailureKind::Exited));
    assert_eq!(s2.exit_code, Some(1));
    assert_eq!(
        s2.reason.as_deref(),
        Some("still present after reset: unit k3s")
    );
    assert_eq!(s2.method.as_deref(), Some("k3s-uninstall.sh"));
    for skipped in &report.hosts[3..] {
        assert_eq!(skipped.failure, Some(FailureKind::Skipped));
        assert_eq!(
            skipped.reason.as_deref(),
            Some("not reset: the server before it (s2) failed")
        );
    }
    let order: Vec<String> = setup.uninstalls().into_iter().map(|c| c.host).collect();
    assert_eq!(order, ["a1", "a2", "s2"]);
    assert_eq!(report.failed_hosts(), 3);
    // The first server was not reset: its context stays, a note says so.
    assert!(report.kubeconfig.is_none());
    assert!(
        report
            .messages
            .iter()
            .any(|m| m.contains("first server s1 was not reset")),
        "{:?}",
        report.messages
    );
    assert_eq!(setup.calls_of("s1").last(), Some(&"unlock"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["hosts"][2]["failure"], "exited");
    assert_eq!(json["hosts"][2]["exit_code"], 1);
    assert_eq!(json["hosts"][3]["failure"], "skipped");
    assert!(json["hosts"][0].get("failure").is_none());
}

#[tokio::test]
async fn an_unreachable_host_is_reported_unreachable_and_does_not_hide_the_others() {
    let mut setup = Setup::new();
    setup.hosts.unreachable.push("a2");
    let reset = setup.survey(&ALL).await.unwrap();
    let plan = reset.plan();
    let a2 = plan.iter().find(|p| p.host == "a2").unwrap();
    assert!(a2.found.is_none());
    assert!(a2.error.as_deref().unwrap().starts_with("unreachable"));
    let report = reset.execute().await;
    assert_eq!(
        hosts_of(&report),
        [
            ("a1", Status::Done),
            ("a2", Status::Failed),
            ("s2", Status::Done),
            ("s3", Status::Done),
            ("s1", Status::Done)
        ]
    );
    assert_eq!(report.hosts[1].failure, Some(FailureKind::Unreachable));
    assert_eq!(report.hosts[1].result, "failed");
    assert_eq!(report.hosts[1].commands, 0);
    assert_eq!(report.failed_hosts(), 1);
    assert_eq!(setup.uninstalls().len(), 4);
}

#[tokio::test]
async fn a_dry_run_plans_every_phase_and_changes_nothing() {
    let setup = Setup::new();
    let kubeconfig = setup.options().kubeconfig.path;
    let config = "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://10.0.0.1:6443\n\
                  contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n\
                  users:\n- name: lab\n  user:\n    token: x\ncurrent-context: lab\n";
    std::fs::write(&kubeconfig, config).unwrap();
    let plan = setup.survey(&ALL).await.unwrap().dry_run().await;
    assert!(plan.dry_run);
    assert_eq!(plan.refused, None);
    // Nothing changed: no uninstall, no Node deletion, the kubeconfig as it was; the lock
    // taken for the survey was given back.
    assert!(setup.uninstalls().is_empty());
    assert!(setup.journal.matching(DELETE).is_empty());
    assert_eq!(std::fs::read_to_string(&kubeconfig).unwrap(), config);
    assert_eq!(setup.calls_of("s1"), ["lock", "survey", "unlock"]);
    let planned = |title: &str| match &plan
        .phases
        .iter()
        .find(|p| p.phase == title)
        .unwrap()
        .result
    {
        PhaseResult::Planned(lines) => lines.clone(),
        other => panic!("{title}: {other:?}"),
    };
    let agents = planned("agents");
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[0].0, "a1");
    assert!(agents[0].1.contains("k3s-agent-uninstall.sh"), "{agents:?}");
    assert_eq!(planned("first server")[0].0, "s1");
    assert!(planned("kubeconfig")[0].1.contains("remove context lab"));
    let hosts: Vec<&str> = plan.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["a1", "a2", "s2", "s3", "s1"]);
}

#[tokio::test]
async fn ctrl_c_mid_reset_stops_the_work_and_releases_the_lock() {
    let setup = Setup::new().on("a1", UNINSTALL, Reply::Hang);
    let reset = setup.survey(&ALL).await.unwrap();
    let cancel = setup.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let report = reset.execute().await;
    let a1 = &report.hosts[0];
    assert_eq!(a1.host, "a1");
    assert_eq!(a1.failure, Some(FailureKind::Cancelled), "{a1:?}");
    // No server was touched after the interrupt; the lock was given back anyway.
    let order: Vec<String> = setup.uninstalls().into_iter().map(|c| c.host).collect();
    assert!(order.iter().all(|h| h.starts_with('a')), "{order:?}");
    assert_eq!(setup.calls_of("s1"), ["lock", "survey", "unlock"]);
    for server in &report.hosts[2..] {
        assert_eq!(server.status, Status::Skipped, "{server:?}");
    }
}

#[tokio::test]
async fn a_lock_held_by_another_run_stops_before_the_survey() {
    let setup = Setup::new().on(
        "s1",
        LOCK,
        Reply::ok("held 65 alice@ws pid 7 run feed (edgeops up)\n"),
    );
    let error = match setup.survey(&ALL).await {
        Ok(_) => panic!("the reset went on under a held lock"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.starts_with("cluster lab is locked by another edgeops run: alice@ws pid 7 run feed"),
        "{error}"
    );
    assert_eq!(setup.calls_of("s1"), ["lock"]);
    assert!(setup.journal.matching(SURVEY).is_empty());
}
