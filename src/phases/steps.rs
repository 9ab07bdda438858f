//! What more than one command does the same way over its [`Run`] state: the usual host
//! selections of a phase, the cluster lock taken in a round trip of its own, and the node list
//! read on the first server, and the wait for a node Ready at a version.

use std::time::Duration;

use crate::engine::{Engine, Failure, FailureKind, HostId, Output, last_lines};
use crate::host::lock::LockError;
use crate::k3s::K3sVersion;
use crate::k3s::nodes::{self, NodeStatus, NodesError};
use crate::k3s::remote;
use crate::ssh::ExecRequest;

use super::run_core::{Run, RunCore};

/// The first server alone: the run's anchor (the lock, the API, what is done once).
pub fn first<C: Run>(cx: &C) -> Vec<HostId> {
    vec![cx.core().first]
}

/// Every host of the run, in inventory order.
pub fn every_host<C: Run>(cx: &C) -> Vec<HostId> {
    cx.core().engine.ids().collect()
}

/// Take the cluster lock on the first server in a round trip of its own; the note of a stale
/// lock taken over is shown and kept.
pub async fn take_lock(core: &mut RunCore) -> Result<(), LockError> {
    if let Some(note) = core.lock.acquire(&core.engine).await? {
        core.message(note);
    }
    Ok(())
}

/// The node list, read on the first server (logged under `title`): `Err` when the read did
/// not run to a zero exit, `Ok(Err)` when what it printed is not a node list.
pub async fn read_nodes(
    core: &RunCore,
    title: &str,
) -> Result<Result<Vec<NodeStatus>, NodesError>, Failure> {
    let request = ExecRequest::new(remote::NODES_COMMAND).sudo(true);
    let out = core
        .engine
        .run(core.first, title, &request, Output::Logged)
        .await?;
    Ok(nodes::parse_nodes(&out.stdout_lossy()))
}

/// Pause between two reads of the node list while waiting for a node (not a limit: the wait
/// is bounded by `--ready-timeout`, each read by the first server's `command_timeout`).
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// Poll the node list on `api` (the first server) through the engine until node `node` is
/// Ready and reports `version`, or `timeout` ([`FailureKind::TimedOut`], with what the node last
/// showed). The API may be away for a moment (the first server restarting): failed reads are
/// retried until the deadline. Each read is bounded by `read_limit` (the first server's
/// `command_timeout`) and counted on `api`; the polls are not logged (a node list every
/// [`POLL_EVERY`] would swamp the log), the wait's outcome is the host's reason. Used by
/// `upgrade` for every node and by `up` when it upgrades servers.
pub async fn wait_node_version(
    engine: &Engine,
    api: HostId,
    node: &str,
    version: &K3sVersion,
    timeout: Duration,
    read_limit: Duration,
) -> Result<(), Failure> {
    // tokio's clock (the same as the wall clock outside tests): paused-time unit tests
    // reach the limit without waiting it out.
    let deadline = tokio::time::Instant::now() + timeout;
    let want = version.to_string();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let request = ExecRequest::new(remote::NODES_COMMAND)
            .sudo(true)
            .timeout(read_limit.min(left).max(Duration::from_secs(1)));
        let read = engine.exec_unlogged(api, "node version", &request).await;
        let last = match read.map_err(|failure| failure.reason) {
            Ok(out) if out.success() => match nodes::parse_nodes(&out.stdout_lossy()) {
                Ok(list) => match nodes::ready_at(&list, node, &want) {
                    Ok(()) => return Ok(()),
                    Err(shows) => shows,
                },
                Err(e) => format!("nodes: {e}"),
            },
            Ok(out) => format!(
                "kubectl exited {}: {}",
                out.exit,
                last_lines(&String::from_utf8_lossy(&out.stderr), 1)
            ),
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::new(
                FailureKind::TimedOut,
                format!(
                    "node {node} not Ready at {want} after {}: {last}",
                    humantime::format_duration(timeout)
                ),
            ));
        }
        tokio::time::sleep(
            POLL_EVERY.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
        )
        .await;
    }
}
