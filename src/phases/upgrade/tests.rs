//! Unit tests of the whole upgrade phase list over scripted hosts (no root, no lab): the
//! order of the roll, batches, a failed server, a node that never reports the target, the dry
//! run and Ctrl-C, read from the journal of every command the fake hosts were asked to run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use super::*;
use crate::engine::runlog::{Redactor, RunLog};
use crate::engine::scripted::{Call, Journal, Reply, ScriptedRemote};
use crate::engine::{FailureKind, Member, Remote};
use crate::fleet::{FleetSettings, HostError};
use crate::inventory::Role;
use crate::k3s::remote;
use crate::phases::{Quiet, Status};
use crate::ssh::{Cancel, ExecOutput, ExecRequest, Exit, SshError};

const FROM: &str = "v1.30.8+k3s1";
const TO: &str = "v1.31.4+k3s1";
const INSTALL: &str = "INSTALL_K3S_VERSION=";
const LOCK: &str = "take()";
const UNLOCK: &str = "\"${pat:?}\"";

/// The cluster as the first server's API shows it: node -> (version, server).
#[derive(Default)]
struct Cluster(Mutex<BTreeMap<String, (String, bool)>>);

impl Cluster {
    fn json(&self) -> String {
        let items: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(name, (version, server))| {
                let labels = if *server {
                    r#""node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/etcd": "true""#
                } else {
                    ""
                };
                format!(
                    r#"{{"metadata": {{"name": "{name}", "labels": {{{labels}}}}},
                        "status": {{"conditions": [{{"type": "Ready", "status": "True"}}],
                        "nodeInfo": {{"architecture": "amd64", "kubeletVersion": "{version}"}}}}}}"#
                )
            })
            .collect();
        format!(r#"{{"kind": "List", "items": [{}]}}"#, items.join(","))
    }
}

/// A scripted host whose successful install moves its node to the installed version (unless
/// `stuck`), and which answers the node list from the shared cluster.
struct Node {
    inner: ScriptedRemote,
    node: String,
    stuck: bool,
    cluster: Arc<Cluster>,
}

impl Remote for Node {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn exec<'a>(&'a self, request: &'a ExecRequest) -> BoxFuture<'a, Result<ExecOutput, SshError>> {
        Box::pin(async move {
            if request.command.contains(remote::NODES_COMMAND) {
                return Ok(ExecOutput {
                    stdout: self.cluster.json().into_bytes(),
                    stderr: Vec::new(),
                    exit: Exit::Status(0),
                    truncated: false,
                });
            }
            let out = self.inner.exec(request).await?;
            if out.success()
                && !self.stuck
                && let Some(rest) = request.command.split(INSTALL).nth(1)
            {
                let version: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || ".+-".contains(*c))
                    .collect();
                if let Some(entry) = self.cluster.0.lock().unwrap().get_mut(&self.node) {
                    entry.0 = version;
                }
            }
            Ok(out)
        })
    }

    fn ready<'a>(&'a self, _: &'a FleetSettings) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Three servers and five agents (batches of two: wrk-1 wrk-2 | wrk-3 wrk-4 | wrk-5), all at
/// `FROM`.
fn inventory() -> crate::inventory::Inventory {
    let mut inventory = crate::k3s::test_inventory::ha_inventory();
    let agent = inventory.hosts[3].clone();
    for i in 3..=5 {
        let mut more = agent.clone();
        more.name = format!("wrk-{i}");
        more.node_name = more.name.clone();
        more.address = format!("10.1.0.2{i}");
        inventory.hosts.push(more);
    }
    inventory
}

fn options(inventory: &crate::inventory::Inventory) -> UpgradeOptions {
    UpgradeOptions {
        target: Target::Version(TO.parse().unwrap()),
        batch_size: 2,
        drain: false,
        drain_timeout: Duration::from_secs(1),
        force: false,
        ready_timeout: Duration::from_millis(300),
        token: None,
        selected: inventory.hosts.iter().map(|h| h.name.clone()).collect(),
        dry_run: false,
    }
}

/// An engine over `members` (scripted hosts, or a host that could not be reached), no log, no
/// progress shown.
fn engine_over(members: Vec<Member>, settings: FleetSettings, cancel: &Cancel) -> Engine {
    let log = RunLog::disabled(Redactor::default());
    Engine::from_remotes(members, settings, cancel.clone(), log, Arc::new(Quiet))
}

struct Fixture {
    journal: Arc<Journal>,
    cancel: Cancel,
    inventory: crate::inventory::Inventory,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            journal: Journal::new(),
            cancel: Cancel::default(),
            inventory: inventory(),
        }
    }

    /// Run the upgrade; `script` adds rules per host name, `stuck` names a node that never
    /// reports the target.
    async fn run(
        &self,
        dry_run: bool,
        stuck: &str,
        script: impl Fn(&str, ScriptedRemote) -> ScriptedRemote,
    ) -> UpgradeReport {
        let cluster = Arc::new(Cluster::default());
        let members = self
            .inventory
            .hosts
            .iter()
            .map(|h| {
                cluster.0.lock().unwrap().insert(
                    h.node_name.clone(),
                    (FROM.to_owned(), h.role == Role::Server),
                );
                let unit = if h.role == Role::Server {
                    "k3s"
                } else {
                    "k3s-agent"
                };
                let scripted =
                    ScriptedRemote::new(&h.name, self.journal.clone(), self.cancel.clone())
                        .on(LOCK, Reply::ok("acquired\n"))
                        .on(
                            "kv os",
                            Reply::ok(format!(
                                "arch=x86_64\nk3s_version={FROM}\nunit_{unit}=active\n"
                            )),
                        );
                let scripted = script(&h.name, scripted).on(
                    INSTALL,
                    Reply::After(Duration::from_millis(30), Box::new(Reply::ok(""))),
                );
                let node = Node {
                    inner: scripted,
                    node: h.node_name.clone(),
                    stuck: h.name == stuck,
                    cluster: cluster.clone(),
                };
                (h.name.clone(), Ok(Arc::new(node) as Arc<dyn Remote>))
            })
            .collect();
        let settings = FleetSettings {
            cancel_grace: Duration::from_millis(200),
            ..FleetSettings::default()
        };
        let engine = engine_over(members, settings, &self.cancel);
        let mut options = options(&self.inventory);
        options.dry_run = dry_run;
        run(engine, &self.inventory, &self.inventory.hosts, options)
            .await
            .unwrap()
    }

    fn installs(&self) -> Vec<Call> {
        self.journal.matching(INSTALL)
    }
}

fn host<'r>(report: &'r UpgradeReport, name: &str) -> &'r UpgradeHost {
    report.hosts.iter().find(|h| h.host == name).unwrap()
}

#[tokio::test]
async fn servers_go_one_at_a_time_before_agents_in_batches() {
    let fx = Fixture::new();
    let report = fx.run(false, "", |_, s| s).await;
    assert!(
        report
            .hosts
            .iter()
            .all(|h| h.status == Status::Done && h.to.as_deref() == Some(TO)),
        "{report:#?}"
    );
    let installs = fx.installs();
    let order: Vec<&str> = installs.iter().map(|c| c.host.as_str()).collect();
    assert_eq!(&order[..3], ["srv-1", "srv-2", "srv-3"]);
    let (servers, agents) = installs.split_at(3);
    for s in servers {
        for other in &installs {
            assert!(
                std::ptr::eq(s, other) || !s.overlaps(other),
                "{} overlapped {}",
                s.host,
                other.host
            );
        }
    }
    let batch_of = |c: &Call| match c.host.as_str() {
        "wrk-1" | "wrk-2" => 1,
        "wrk-3" | "wrk-4" => 2,
        _ => 3,
    };
    for a in agents {
        for b in agents {
            if a.host != b.host {
                assert_eq!(
                    a.overlaps(b),
                    batch_of(a) == batch_of(b),
                    "{} and {}: batches of two, one batch after the other",
                    a.host,
                    b.host
                );
            }
        }
    }
    // The lock was taken first and released last.
    let calls = fx.journal.calls();
    assert!(calls.first().unwrap().command.contains(LOCK));
    assert!(calls.last().unwrap().command.contains(UNLOCK));
}

#[tokio::test]
async fn a_failed_server_stops_the_roll_and_skips_the_rest_with_a_reason() {
    let fx = Fixture::new();
    let report = fx
        .run(false, "", |name, s| {
            if name == "srv-2" {
                s.on(INSTALL, Reply::fail(1, "install-fail: checksum mismatch"))
            } else {
                s
            }
        })
        .await;
    assert_eq!(host(&report, "srv-1").status, Status::Done);
    let failed = host(&report, "srv-2");
    assert_eq!(failed.failure, Some(FailureKind::Exited));
    assert_eq!(failed.exit_code, Some(1));
    assert!(failed.reason.as_ref().unwrap().contains("install-fail"));
    for name in ["srv-3", "wrk-1", "wrk-2", "wrk-3", "wrk-4", "wrk-5"] {
        let skipped = host(&report, name);
        assert_eq!(skipped.status, Status::Skipped, "{name}");
        assert_eq!(skipped.failure, Some(FailureKind::Skipped), "{name}");
        assert!(
            skipped
                .reason
                .as_ref()
                .unwrap()
                .contains("server srv-2 failed"),
            "{name}: {skipped:?}"
        );
        assert_eq!(skipped.to.as_deref(), Some(FROM));
    }
    let tried: Vec<String> = fx.installs().into_iter().map(|c| c.host).collect();
    assert_eq!(tried, ["srv-1", "srv-2"]);
    assert!(
        report
            .messages
            .iter()
            .any(|m| m.contains("server srv-2 failed"))
    );
}

#[tokio::test]
async fn a_node_that_never_reports_the_target_times_out_at_the_ready_limit() {
    let fx = Fixture::new();
    let started = std::time::Instant::now();
    let report = fx.run(false, "wrk-3", |_, s| s).await;
    let stuck = host(&report, "wrk-3");
    assert_eq!(stuck.failure, Some(FailureKind::TimedOut), "{stuck:?}");
    assert_eq!(
        stuck.reason.as_deref(),
        Some(format!("node wrk-3 not Ready at {TO} after 300ms: still reports {FROM}").as_str())
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // An agent does not stop the others.
    for name in ["wrk-1", "wrk-2", "wrk-4", "wrk-5"] {
        assert_eq!(host(&report, name).status, Status::Done, "{name}");
    }
}

#[tokio::test]
async fn a_dry_run_plans_the_order_and_changes_nothing() {
    let fx = Fixture::new();
    let report = fx.run(true, "", |_, s| s).await;
    assert!(report.dry_run);
    assert!(fx.installs().is_empty());
    assert!(fx.journal.matching(LOCK).is_empty(), "no lock in a dry run");
    assert!(fx.journal.matching(UNLOCK).is_empty());
    let commands: Vec<String> = fx.journal.calls().into_iter().map(|c| c.command).collect();
    assert!(
        commands.iter().all(|c| c.contains("kv os")),
        "only the facts were read: {commands:?}"
    );
    assert_eq!(
        host(&report, "srv-2").result,
        format!("would upgrade {FROM} -> {TO} (server 2 of 3, one at a time)")
    );
    assert_eq!(
        host(&report, "wrk-5").result,
        format!("would upgrade {FROM} -> {TO} (agents batch 3 of 3)")
    );
    assert!(report.hosts.iter().all(|h| h.status == Status::Planned));
    assert_eq!(report.failed_hosts(), 0);
}

#[tokio::test]
async fn ctrl_c_mid_roll_releases_the_lock() {
    let fx = Fixture::new();
    let cancel = fx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        cancel.cancel();
    });
    let report = fx
        .run(false, "", |name, s| {
            if name == "srv-2" {
                s.on(INSTALL, Reply::Hang)
            } else {
                s
            }
        })
        .await;
    assert_eq!(host(&report, "srv-1").status, Status::Done);
    assert_eq!(host(&report, "srv-2").failure, Some(FailureKind::Cancelled));
    // The rest was not upgraded: srv-3 cancelled before it started, the agents not reached.
    assert_eq!(host(&report, "srv-3").failure, Some(FailureKind::Cancelled));
    for agent in report.hosts.iter().skip(3) {
        assert_eq!(agent.failure, Some(FailureKind::Skipped), "{agent:?}");
        assert_eq!(agent.to.as_deref(), Some(FROM));
    }
    let unlock = fx.journal.matching(UNLOCK);
    assert_eq!(unlock.len(), 1, "the lock was released once");
    assert_eq!(unlock[0].host, "srv-1");
    let hung = &fx.installs()[1];
    assert!(unlock[0].started > hung.started);
    let tried: Vec<String> = fx.installs().into_iter().map(|c| c.host).collect();
    assert_eq!(tried, ["srv-1", "srv-2"]);
}

#[test]
fn the_phases_select_from_the_state_alone() {
    use crate::engine::Failure;
    use crate::k3s::install::{InstallSpec, Join};
    let mut inventory = inventory();
    // An agent first in the inventory: the roll still starts with the servers.
    let wrk1 = inventory.hosts.remove(3);
    inventory.hosts.insert(0, wrk1);
    let journal = Journal::new();
    let cancel = Cancel::default();
    let engine = |unreachable: &str| {
        let members = inventory
            .hosts
            .iter()
            .map(|h| {
                let remote = if h.name == unreachable {
                    Err(Failure::new(
                        FailureKind::Unreachable,
                        "unreachable: no route",
                    ))
                } else {
                    Ok(Arc::new(ScriptedRemote::new(
                        &h.name,
                        journal.clone(),
                        cancel.clone(),
                    )) as Arc<dyn Remote>)
                };
                (h.name.clone(), remote)
            })
            .collect();
        engine_over(members, FleetSettings::default(), &cancel)
    };
    let mut options = options(&inventory);
    options.selected.retain(|h| h != "wrk-2");
    let target: crate::k3s::K3sVersion = TO.parse().unwrap();
    let renderer = crate::render::Renderer::builtin();
    let mut cx = run_state(engine(""), &inventory, &inventory.hosts, options.clone()).unwrap();
    cx.target = Some(target.clone());
    for (_, state) in cx.hosts.iter_mut() {
        let join = Join::for_host(&inventory, &state.host).unwrap();
        state.spec =
            Some(InstallSpec::new(&inventory, &state.host, join, &target, &renderer).unwrap());
    }
    let srv2 = cx.core.engine.id_of("srv-2").unwrap();
    cx.hosts[srv2].finish(Status::Unchanged, "already there", None);
    let names = |cx: &Upgrade, ids: Vec<crate::engine::HostId>| -> Vec<String> {
        ids.into_iter()
            .map(|id| cx.core.engine.name(id).to_owned())
            .collect()
    };
    assert!(prepare::first_if_unreachable(&cx).is_empty());
    assert!(
        prepare::airgapped_to_upgrade(&cx).is_empty(),
        "not air-gapped"
    );
    assert_eq!(names(&cx, roll::servers_pending(&cx)), ["srv-1", "srv-3"]);
    let agents = roll::agents_pending(&cx);
    assert_eq!(
        names(&cx, agents.clone()),
        ["wrk-1", "wrk-3", "wrk-4", "wrk-5"]
    );
    let plan = roll::plan_agents(&mut cx, &agents);
    assert!(plan[1].1.ends_with("(agents batch 1 of 2)"), "{plan:?}");
    assert!(plan[2].1.ends_with("(agents batch 2 of 2)"), "{plan:?}");
    // Nothing ran on a host to make these choices.
    assert!(journal.calls().is_empty());
    // An unreachable first server is the one host the first phase acts on.
    let cx = run_state(engine("srv-1"), &inventory, &inventory.hosts, options).unwrap();
    assert_eq!(names(&cx, prepare::first_if_unreachable(&cx)), ["srv-1"]);
}
