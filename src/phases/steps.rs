//! What more than one command does the same way over its [`Run`] state: the usual host
//! selections of a phase, the cluster lock taken in a round trip of its own, and the node list
//! read on the first server.

use crate::engine::{Failure, HostId, Output};
use crate::host::lock::LockError;
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
