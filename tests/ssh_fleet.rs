//! The fleet over real loopback sshds: sessions kept across steps, results in host order whatever
//! the finishing order, one host's failure never hides the others', cancellation.

mod ssh_support;

use std::sync::Arc;
use std::time::Duration;

use edgeops::fleet::{Fleet, FleetSettings, HostError, Silent, StepError};
use edgeops::ssh::ExecRequest;
use ssh_support::*;

#[tokio::test(flavor = "multi_thread")]
async fn steps_reuse_sessions_and_report_every_host_in_order() {
    let key = client_key("ed25519", "");
    let servers: Vec<Sshd> = (0..3).map(|_| Sshd::start(&[&key.path])).collect();
    let known: String = servers.iter().map(Sshd::known_hosts_line).collect();
    let (ctx, _) = context_with(key.dir.path(), &known);
    let mut targets: Vec<_> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| options(&format!("h{i}"), s.port, credentials(&key.path, None)))
        .collect();
    targets.insert(
        1,
        options("down", free_port(), credentials(&key.path, None)),
    );
    let settings = FleetSettings {
        concurrency: 2,
        connect_attempts: 2,
        backoff: Duration::from_millis(50),
        ..Default::default()
    };
    let fleet = Fleet::connect_all(targets, ctx, settings, Arc::new(Silent)).await;
    assert_eq!(
        fleet.hosts().collect::<Vec<_>>(),
        ["h0", "down", "h1", "h2"]
    );

    // The first host finishes last; the order of results still follows the hosts.
    let first = fleet
        .run("pid", |session| async move {
            let delay = if session.name() == "h0" { "0.5" } else { "0" };
            let out = session
                .exec(&ExecRequest::new(format!("sleep {delay}; echo $PPID")))
                .await?;
            Ok(out.stdout_lossy())
        })
        .await;
    let names: Vec<&str> = first.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(names, ["h0", "down", "h1", "h2"]);
    assert!(matches!(first[1].outcome, Err(HostError::Unreachable(_))));

    // A failing step on one host; the others are unaffected. The same sshd session (same
    // parent pid) serves the second step: the connection was kept.
    let second = fleet
        .run("again", |session| async move {
            if session.name() == "h1" {
                return Err(StepError::Other(anyhow::anyhow!("refused by the step")));
            }
            Ok(session
                .exec(&ExecRequest::new("echo $PPID"))
                .await?
                .stdout_lossy())
        })
        .await;
    assert_eq!(
        second[0].outcome.as_ref().unwrap(),
        first[0].outcome.as_ref().unwrap()
    );
    assert_eq!(
        second[3].outcome.as_ref().unwrap(),
        first[3].outcome.as_ref().unwrap()
    );
    match &second[2].outcome {
        Err(HostError::Step(e)) => assert_eq!(e.to_string(), "refused by the step"),
        other => panic!("{other:?}"),
    }
    fleet.close_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_ends_the_step_on_every_host_and_leaves_no_remote_process() {
    let key = client_key("ed25519", "");
    let servers: Vec<Sshd> = (0..2).map(|_| Sshd::start(&[&key.path])).collect();
    let known: String = servers.iter().map(Sshd::known_hosts_line).collect();
    let (ctx, _) = context_with(key.dir.path(), &known);
    let targets = servers
        .iter()
        .enumerate()
        .map(|(i, s)| options(&format!("h{i}"), s.port, credentials(&key.path, None)))
        .collect();
    let fleet = Fleet::connect_all(
        targets,
        ctx.clone(),
        FleetSettings::default(),
        Arc::new(Silent),
    )
    .await;
    let marker = "4714.0815";
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        while processes_with(&format!("sleep {marker}")).len() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cancel.cancel();
    });
    let results = fleet
        .run("sleep", |session| async move {
            Ok(session
                .exec(&ExecRequest::new(format!("sleep {marker}")))
                .await?
                .stdout_lossy())
        })
        .await;
    for r in &results {
        assert!(
            matches!(r.outcome, Err(HostError::Cancelled)),
            "{}: {:?}",
            r.host,
            r.outcome
        );
    }
    fleet.close_all().await;
    let left = wait_until_gone(marker, Duration::from_secs(5));
    assert!(left.is_empty(), "remote processes left: {left:?}");
}
