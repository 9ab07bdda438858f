//! The whole `up` / `plan` phase list driven over scripted fake hosts (no root, no lab): the
//! order of the roll, the windows, limits, typed failures, Ctrl-C and the dry-run gate.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::engine::runlog::{Redactor, RunLog};
use crate::engine::scripted::{self, Call, Journal, Reply, ScriptedRemote};
use crate::engine::{Member, Remote};
use crate::fleet::FleetSettings;
use crate::k3s::test_inventory;
use crate::phases::Quiet;
use crate::ssh::Cancel;

const VERSION: &str = "v1.31.4+k3s1";
/// A text only the install script (`sh/install.sh`) contains.
const INSTALL: &str = "IFS= read -r token || true";
/// A text only the lock's release (`sh/lock-release.sh`) contains.
const RELEASE: &str = "*\"$pat\"*) rm -f \"$f\"";

/// `servers` (the first is the first server) and `agents`, version pinned, no GitLab; each
/// host's `command_timeout` and the cluster's `join_timeout` short.
fn inventory(servers: &[&str], agents: &[&str]) -> Inventory {
    let mut inventory = test_inventory::pi_inventory();
    inventory.gitlab = None;
    inventory.cluster.version = Some(VERSION.into());
    inventory.cluster.token = crate::inventory::SecretSource::Generate;
    inventory.cluster.join_timeout = Duration::from_secs(20);
    inventory.cluster.ha = servers.len() > 1;
    let mut hosts = Vec::new();
    for (i, name) in servers.iter().enumerate() {
        hosts.push(test_inventory::server(name, &format!("10.0.0.{}", i + 1)));
    }
    for (i, name) in agents.iter().enumerate() {
        hosts.push(test_inventory::agent(name, &format!("10.0.1.{}", i + 1)));
    }
    for host in &mut hosts {
        host.ssh.command_timeout = Duration::from_secs(40);
    }
    inventory.hosts = hosts;
    inventory
}

/// A fresh board's facts (no k3s yet).
fn facts(name: &str) -> String {
    format!(
        "os=Debian GNU/Linux 12\narch=x86_64\nkernel=6.1.0\nmem_kb=4000000\ninit=systemd\n\
         hostname={name}\nuid=1000\nboot_id=boot-{name}\ndisk_kb=20000000\nsudo=yes\n"
    )
}

/// What the node list says once every node of `inventory` is Ready at [`VERSION`].
fn nodes_ready(inventory: &Inventory) -> String {
    let items: Vec<String> = inventory
        .hosts
        .iter()
        .map(|h| {
            let role = if h.role == Role::Server {
                r#""node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true","#
            } else {
                ""
            };
            let labels: String = h
                .labels
                .iter()
                .map(|(k, v)| format!(r#""{k}": "{v}","#))
                .collect();
            format!(
                r#"{{"metadata": {{"name": "{}", "labels": {{ {role} {labels} "kubernetes.io/arch": "amd64"}}}},
                  "status": {{"conditions": [{{"type": "Ready", "status": "True"}}],
                  "nodeInfo": {{"kubeletVersion": "{VERSION}", "architecture": "amd64"}}}}}}"#,
                h.node_name
            )
        })
        .collect();
    format!(r#"{{"kind": "List", "items": [{}]}}"#, items.join(","))
}

/// The first server: takes the lock with its facts, installs and answers the API read (with
/// the join token), answers the node polls (releasing the lock when asked).
fn first_server(
    name: &str,
    inventory: &Inventory,
    journal: &Arc<Journal>,
    cancel: &Cancel,
) -> ScriptedRemote {
    let token = JoinToken::generate().unwrap();
    ScriptedRemote::new(name, journal.clone(), cancel.clone())
        .on(
            "--- edgeops-lock",
            Reply::ok(format!(
                "--- edgeops-lock\nacquired\n--- edgeops-facts\n{}",
                facts(name)
            )),
        )
        .on(
            "--- edgeops-api",
            Reply::After(
                Duration::from_millis(50),
                Box::new(Reply::ok(format!(
                    "installed\n--- edgeops-api\n--- token\n{}\n",
                    token.expose()
                ))),
            ),
        )
        .on(
            remote::NODES_COMMAND,
            Reply::ok(format!(
                "{}\n--- edgeops-unlocked\n",
                nodes_ready(inventory)
            )),
        )
}

/// A joining host: its facts; installs take 50 ms unless `install` says otherwise.
fn joiner(name: &str, install: Reply, journal: &Arc<Journal>, cancel: &Cancel) -> ScriptedRemote {
    ScriptedRemote::new(name, journal.clone(), cancel.clone())
        .on("kv mem_kb", Reply::ok(facts(name)))
        .on(INSTALL, install)
}

fn slow_ok() -> Reply {
    Reply::After(
        Duration::from_millis(50),
        Box::new(Reply::ok("installed\n")),
    )
}

fn options(mode: Mode) -> UpOptions {
    UpOptions {
        mode,
        ready_timeout: Duration::from_secs(10),
        kubeconfig: None,
        token: None,
        reboot: Reboot::AllAtOnce,
        gitlab: None,
        rotate_join_token: false,
    }
}

/// Run `mode` (`None`: `status`) over `members` (in inventory order).
async fn run_fake(
    inventory: &Inventory,
    members: Vec<Member>,
    mode: impl Into<Option<Mode>>,
    cancel: &Cancel,
) -> RunReport {
    let mode = mode.into();
    let engine = Engine::from_remotes(
        members,
        FleetSettings::default(),
        cancel.clone(),
        RunLog::disabled(Redactor::default()),
        Arc::new(Quiet),
    );
    let options = match mode {
        Some(mode) => options(mode),
        None => UpOptions::read_only(),
    };
    let runner = Runner::new(inventory, &inventory.hosts, engine, options).unwrap();
    match mode {
        Some(_) => run_on(runner).await.unwrap(),
        None => access::status_on(runner).await.unwrap(),
    }
}

fn member(remote: ScriptedRemote) -> Member {
    (
        remote.name().to_owned(),
        Ok(Arc::new(remote) as Arc<dyn Remote>),
    )
}

fn host<'a>(report: &'a RunReport, name: &str) -> &'a HostReport {
    report.hosts.iter().find(|h| h.host == name).unwrap()
}

fn installs(journal: &Journal, host: &str) -> Vec<Call> {
    journal
        .matching(INSTALL)
        .into_iter()
        .filter(|c| c.host == host)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn first_server_before_anyone_else_servers_one_at_a_time_agents_in_one_window() {
    let inv = inventory(&["s1", "s2", "s3"], &["a1", "a2", "a3"]);
    let (journal, cancel) = (Journal::new(), Cancel::default());
    let mut members = vec![member(first_server("s1", &inv, &journal, &cancel))];
    for name in ["s2", "s3", "a1", "a2", "a3"] {
        members.push(member(joiner(name, slow_ok(), &journal, &cancel)));
    }
    let report = run_fake(&inv, members, Mode::Up, &cancel).await;
    for h in &report.hosts {
        assert_eq!(h.status, Status::Done, "{h:?}");
        assert_eq!(h.result, "installed", "{h:?}");
        assert!(h.failure.is_none(), "{h:?}");
    }
    let first = installs(&journal, "s1");
    assert_eq!(
        first.len(),
        1,
        "one install (with the API read) on the first server"
    );
    let others: Vec<Call> = ["s2", "s3", "a1", "a2", "a3"]
        .iter()
        .flat_map(|h| installs(&journal, h))
        .collect();
    assert_eq!(others.len(), 5);
    for call in &others {
        assert!(
            call.started > first[0].ended,
            "{} installed before the first server was done",
            call.host
        );
    }
    let (s2, s3) = (&installs(&journal, "s2")[0], &installs(&journal, "s3")[0]);
    assert!(!s2.overlaps(s3), "servers must join one at a time");
    assert!(s2.ended < s3.started, "servers in inventory order");
    let agents: Vec<Call> = ["a1", "a2", "a3"]
        .iter()
        .map(|h| installs(&journal, h)[0].clone())
        .collect();
    assert!(
        agents[0].overlaps(&agents[1]) && agents[1].overlaps(&agents[2]),
        "agents install in one window"
    );
    assert!(
        agents.iter().all(|a| a.started > s3.ended),
        "agents after the servers"
    );
    // The lock was taken with the facts and released with the node poll: no own round trip.
    let releases = journal.matching(RELEASE);
    assert_eq!(releases.len(), 1, "one release");
    assert_eq!(releases[0].host, "s1");
    assert!(releases[0].command.contains(remote::NODES_COMMAND));
}

#[tokio::test(start_paused = true)]
async fn a_failed_server_stops_the_roll_and_the_rest_are_skipped_with_the_reason() {
    let inv = inventory(&["s1", "s2", "s3"], &["a1"]);
    let (journal, cancel) = (Journal::new(), Cancel::default());
    let members = vec![
        member(first_server("s1", &inv, &journal, &cancel)),
        member(joiner(
            "s2",
            Reply::fail(7, "k3s-install: download failed\n"),
            &journal,
            &cancel,
        )),
        member(joiner("s3", slow_ok(), &journal, &cancel)),
        member(joiner("a1", slow_ok(), &journal, &cancel)),
    ];
    let report = run_fake(&inv, members, Mode::Up, &cancel).await;
    let s2 = host(&report, "s2");
    assert_eq!(s2.status, Status::Failed);
    assert_eq!(s2.failure, Some(FailureKind::Exited));
    assert_eq!(s2.exit_code, Some(7));
    assert!(
        s2.reason.as_deref().unwrap().contains("download failed"),
        "{s2:?}"
    );
    let s3 = host(&report, "s3");
    assert_eq!(s3.status, Status::Skipped);
    assert_eq!(s3.failure, Some(FailureKind::Skipped));
    assert!(
        s3.reason
            .as_deref()
            .unwrap()
            .contains("server s2 failed to join"),
        "{s3:?}"
    );
    assert!(
        installs(&journal, "s3").is_empty(),
        "a skipped server ran nothing"
    );
    // Agents do not depend on a later server.
    assert_eq!(host(&report, "a1").status, Status::Done);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["hosts"][1]["failure"], "exited");
    assert_eq!(json["hosts"][1]["exit_code"], 7);
    assert_eq!(json["hosts"][2]["failure"], "skipped");
    assert!(json["hosts"][0].get("failure").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_hung_install_times_out_at_the_inventorys_limit_and_is_stopped() {
    let inv = inventory(&["s1"], &["a1", "a2"]);
    let limit = join_watch::install_timeout(&inv, &inv.hosts[1]);
    assert_eq!(limit, Duration::from_secs(40 + 20) + join_watch::STOP_GRACE);
    let (journal, cancel) = (Journal::new(), Cancel::default());
    let members = vec![
        member(first_server("s1", &inv, &journal, &cancel)),
        member(joiner("a1", Reply::Hang, &journal, &cancel)),
        member(joiner("a2", slow_ok(), &journal, &cancel)),
    ];
    let started = tokio::time::Instant::now();
    let report = run_fake(&inv, members, Mode::Up, &cancel).await;
    let took = started.elapsed();
    let a1 = host(&report, "a1");
    assert_eq!(a1.status, Status::Failed);
    assert_eq!(a1.failure, Some(FailureKind::TimedOut), "{a1:?}");
    assert!(
        a1.reason.as_deref().unwrap().contains("timed out"),
        "{a1:?}"
    );
    assert!(
        took >= limit,
        "gave up after {took:?}, before the limit {limit:?}"
    );
    assert!(took < limit + Duration::from_secs(30), "took {took:?}");
    // The hung command ended with the run (the exec's timeout stops it on the host).
    assert_eq!(installs(&journal, "a1").len(), 1);
    assert_eq!(host(&report, "a2").status, Status::Done);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_agent_does_not_hide_the_others() {
    let inv = inventory(&["s1"], &["a1", "a2"]);
    let (journal, cancel) = (Journal::new(), Cancel::default());
    let members = vec![
        member(first_server("s1", &inv, &journal, &cancel)),
        (
            "a1".to_owned(),
            Err(Failure::new(
                FailureKind::Unreachable,
                "unreachable: connection refused",
            )),
        ),
        member(joiner("a2", slow_ok(), &journal, &cancel)),
    ];
    let report = run_fake(&inv, members, Mode::Up, &cancel).await;
    let a1 = host(&report, "a1");
    assert_eq!(a1.status, Status::Failed);
    assert_eq!(a1.failure, Some(FailureKind::Unreachable));
    assert_eq!(host(&report, "s1").status, Status::Done);
    assert_eq!(host(&report, "a2").status, Status::Done);
    assert_eq!(report.failed_hosts(), 1);
}

#[tokio::test(start_paused = true)]
async fn ctrl_c_mid_phase_releases_the_lock_on_the_first_server() {
    let inv = inventory(&["s1"], &["a1", "a2"]);
    let (journal, cancel) = (Journal::new(), Cancel::default());
    let members = vec![
        member(first_server("s1", &inv, &journal, &cancel)),
        member(joiner("a1", Reply::Hang, &journal, &cancel)),
        member(joiner("a2", Reply::Hang, &journal, &cancel)),
    ];
    let interrupt = cancel.clone();
    let watch = journal.clone();
    tokio::spawn(async move {
        // Ctrl-C once the agents' installs are under way.
        while watch.calls().iter().filter(|c| c.host == "s1").count() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        interrupt.cancel();
    });
    let report = run_fake(&inv, members, Mode::Up, &cancel).await;
    for name in ["a1", "a2"] {
        let agent = host(&report, name);
        assert_eq!(agent.status, Status::Failed, "{agent:?}");
        assert_eq!(agent.failure, Some(FailureKind::Cancelled), "{agent:?}");
    }
    let releases: Vec<Call> = journal
        .matching(RELEASE)
        .into_iter()
        .filter(|c| c.host == "s1")
        .collect();
    assert_eq!(releases.len(), 1, "the lock is released once");
    let last_install = installs(&journal, "a1")[0]
        .ended
        .max(installs(&journal, "a2")[0].ended);
    assert!(
        releases[0].started > last_install,
        "released after the agents stopped"
    );
    assert!(releases[0].sudo);
}

#[tokio::test(start_paused = true)]
async fn plan_changes_nothing() {
    let inv = inventory(&["s1", "s2"], &["a1"]);
    let (journal, cancel) = (Journal::new(), Cancel::default());
    let members = vec![
        member(joiner("s1", slow_ok(), &journal, &cancel)),
        member(joiner("s2", slow_ok(), &journal, &cancel)),
        member(joiner("a1", slow_ok(), &journal, &cancel)),
    ];
    let report = run_fake(&inv, members, Mode::Plan, &cancel).await;
    assert!(report.dry_run);
    for h in &report.hosts {
        assert_eq!(h.status, Status::Planned, "{h:?}");
        assert_eq!(h.result, "would install", "{h:?}");
    }
    let calls = journal.calls();
    assert_eq!(calls.len(), 3, "one facts round trip per host: {calls:?}");
    for call in &calls {
        assert!(!call.sudo, "plan ran a command with sudo: {}", call.command);
        assert!(
            !call.command.contains(INSTALL),
            "plan installed on {}",
            call.host
        );
        assert!(
            !call.command.contains("--- edgeops-lock"),
            "plan took the lock"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn status_reads_one_exec_per_host_and_changes_nothing() {
    let inv = inventory(&["s1"], &["a1"]);
    let (journal, cancel) = (Journal::new(), Cancel::default());
    let k3s = format!("k3s_version={VERSION}\nunit_k3s=active\n");
    let agent = format!("k3s_version={VERSION}\nunit_k3s-agent=active\n");
    let members = vec![
        member(
            ScriptedRemote::new("s1", journal.clone(), cancel.clone()).on(
                "--- nodes",
                Reply::ok(format!(
                    "--- edgeops-facts\n{}{k3s}--- nodes\n{}",
                    facts("s1"),
                    nodes_ready(&inv)
                )),
            ),
        ),
        member(
            ScriptedRemote::new("a1", journal.clone(), cancel.clone())
                .on("kv mem_kb", Reply::ok(format!("{}{agent}", facts("a1")))),
        ),
    ];
    let report = run_fake(&inv, members, None, &cancel).await;
    assert_eq!(host(&report, "s1").result, "k3s active");
    assert_eq!(host(&report, "a1").result, "k3s-agent active");
    assert!(host(&report, "a1").facts.is_some());
    assert_eq!(report.nodes.len(), 2, "{report:?}");
    assert_eq!(report.failed_hosts(), 0);
    let calls = journal.calls();
    assert_eq!(calls.len(), 2, "one exec per host: {calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| !c.command.contains(INSTALL) && !c.command.contains("--- edgeops-lock"))
    );
}

#[test]
fn phase_selections_follow_the_run_state() {
    let inv = inventory(&["s1", "s2", "s3"], &["a1", "a2"]);
    let (journal, cancel) = (Journal::new(), Cancel::default());
    let hosts = inv
        .hosts
        .iter()
        .map(|h| ScriptedRemote::new(&h.name, journal.clone(), cancel.clone()))
        .collect();
    let log = RunLog::disabled(Redactor::default());
    let engine = scripted::engine(hosts, FleetSettings::default(), cancel, log);
    let mut runner = Runner::new(&inv, &inv.hosts, engine, options(Mode::Up)).unwrap();
    let id = |name: &str| runner.core.engine.id_of(name).unwrap();
    let (s1, s2, s3, a1, a2) = (id("s1"), id("s2"), id("s3"), id("a1"), id("a2"));
    assert_eq!(runner.core.first, s1);
    // Nothing decided yet: nobody joins.
    assert!(runner.joining_servers().is_empty());
    for (_, state) in runner.hosts.iter_mut() {
        state.decision = Some(Decision {
            action: Action::Install,
            why: "no k3s".into(),
        });
    }
    assert_eq!(
        runner.joining_servers(),
        vec![s2, s3],
        "never the first server"
    );
    assert_eq!(runner.joining_agents(), vec![a1, a2]);
    runner.hosts[s3].fail(Failure::refused("preflight: no"));
    runner.hosts[a2].skip("first server failed");
    assert_eq!(runner.joining_servers(), vec![s2]);
    assert_eq!(runner.joining_agents(), vec![a1]);
    assert!(runner.pis_needing_cgroup().is_empty());
    // A token rotation rewrites the file where k3s is installed, on the live hosts but the
    // first server (done before them): servers (one at a time) and agents apart.
    for (id, state) in runner.hosts.iter_mut() {
        let unit = if id == a1 { "k3s-agent" } else { "k3s" };
        state.facts = Some(Facts::parse(&format!(
            "{}k3s_version={VERSION}\nunit_{unit}=active\n",
            facts("x")
        )));
    }
    runner.hosts[a2].facts = Some(Facts::parse(&facts("a2")));
    assert_eq!(runner.token_rotation_hosts(), (vec![s2], vec![a1]));
    assert!(
        runner.airgap_hosts().is_empty(),
        "not an air-gapped cluster"
    );
}

#[tokio::test(start_paused = true)]
async fn up_upgrading_a_server_waits_for_its_node_through_the_first_server_and_times_out() {
    const OLD: &str = "v1.30.6+k3s1";
    let inv = inventory(&["s1", "s2", "s3"], &[]);
    let (journal, cancel) = (Journal::new(), Cancel::default());
    let running = |name: &str| format!("{}k3s_version={OLD}\nunit_k3s=active\n", facts(name));
    // s2's node never reports the pinned version: its upgrade must not count as done.
    let nodes = nodes_ready(&inv);
    let (head, tail) = nodes.split_at(nodes.find(r#""name": "s2""#).unwrap());
    let nodes = format!("{head}{}", tail.replacen(VERSION, OLD, 1));
    let token = JoinToken::generate().unwrap();
    let first = ScriptedRemote::new("s1", journal.clone(), cancel.clone())
        .on(
            "--- edgeops-lock",
            Reply::ok(format!(
                "--- edgeops-lock\nacquired\n--- edgeops-facts\n{}",
                running("s1")
            )),
        )
        .on(
            "--- edgeops-api",
            Reply::ok(format!(
                "installed\n--- edgeops-api\n--- token\n{}\n",
                token.expose()
            )),
        )
        .on(
            RELEASE,
            Reply::ok(format!("{nodes}\n--- edgeops-unlocked\n")),
        )
        .on(remote::NODES_COMMAND, Reply::ok(nodes.clone()));
    let server = |name: &str| {
        ScriptedRemote::new(name, journal.clone(), cancel.clone())
            .on("kv mem_kb", Reply::ok(running(name)))
            .on(INSTALL, slow_ok())
    };
    let members = vec![member(first), member(server("s2")), member(server("s3"))];
    let started = tokio::time::Instant::now();
    let report = run_fake(&inv, members, Mode::Up, &cancel).await;
    let took = started.elapsed();
    // The first server is Ready at the pin: upgraded. s2 never is: it times out at
    // --ready-timeout naming what its node still reports, and s3 waits for it (skipped).
    let s1 = host(&report, "s1");
    assert_eq!(s1.status, Status::Done, "{s1:?}");
    assert_eq!(s1.result, "upgraded", "{s1:?}");
    let s2 = host(&report, "s2");
    assert_eq!(s2.status, Status::Failed, "{s2:?}");
    assert_eq!(s2.failure, Some(FailureKind::TimedOut), "{s2:?}");
    let reason = s2.reason.as_deref().unwrap();
    assert!(
        reason.contains(&format!("node s2 not Ready at {VERSION}"))
            && reason.contains(&format!("still reports {OLD}")),
        "{reason}"
    );
    assert_eq!(host(&report, "s3").status, Status::Skipped);
    assert!(installs(&journal, "s3").is_empty(), "s3 ran no install");
    let ready_timeout = options(Mode::Up).ready_timeout;
    assert!(took >= ready_timeout, "gave up after {took:?}");
    // The polls ran on the first server, after s2's install, through the engine (counted).
    let s2_install = installs(&journal, "s2")[0].clone();
    let polls: Vec<Call> = journal
        .matching(remote::NODES_COMMAND)
        .into_iter()
        .filter(|c| c.host == "s1" && c.started > s2_install.ended)
        .collect();
    assert!(polls.len() >= 2, "polled until the limit: {polls:?}");
    assert!(s1.commands as usize >= polls.len(), "{s1:?}");
}
