//! `replace`: take a dead board's node out of the cluster so a new board can take its place,
//! on the run engine with the first server as its only host. [`SURVEY`] (read-only): take the
//! cluster lock, read the node list and decide (`decide`); the CLI shows the plan and asks;
//! [`REPLACE`]: delete the Node through the first server (k3s removes a server's etcd member with
//! it). The lock is then handed on to the `up --limit NEW` the CLI runs in the same process
//! (which takes it on and releases it), so no other run comes between the deletion and the join.
//!
//! - `decide`: the pure decision; `phases`: the lock, nodes and delete phases; `run`: the
//!   [`Replace`] handle the CLI drives.

use std::time::Duration;

use crate::engine::{Manager, Step};
use crate::phases::run_core::RunCore;
use crate::phases::steps::first;

mod decide;
mod phases;
mod run;

#[cfg(test)]
mod tests;

pub use decide::{OldNode, ReplaceRefusal, decide};
pub use run::{HandedLock, Replace};

/// One node-list read or Node deletion through the first server.
pub const API_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything one replacement knows between its phases.
pub struct ReplaceRun {
    /// The engine (the first server alone), the cluster lock, notes.
    pub core: RunCore,
    pub first_node: String,
    /// The node name of the board that is replaced.
    pub old_node: String,
    /// What the node list said about the old node, or why it could not be read or is refused.
    pub decision: Option<Result<OldNode, String>>,
    /// The Node deletion failed: why.
    pub delete_failed: Option<String>,
}

crate::phases::run_core::impl_run!(ReplaceRun);

/// Before the confirmation, read-only.
fn survey_phases() -> Manager<'static, ReplaceRun> {
    Manager::new(false)
        .then(Step::reads("lock", first, phases::lock))
        .then(Step::reads("nodes", first, phases::read_nodes))
}

/// After the confirmation.
fn replace_phases() -> Manager<'static, ReplaceRun> {
    Manager::new(false).then(Step::writes(
        "delete node",
        |cx| match cx.decision {
            Some(Ok(OldNode::Dead { .. })) => vec![cx.core.first],
            _ => Vec::new(),
        },
        phases::delete_node,
    ))
}

/// The phase titles in order, for docs and tests.
pub const SURVEY: [&str; 2] = ["lock", "nodes"];
pub const REPLACE: [&str; 1] = ["delete node"];
