//! `up`, `plan` and `status` over one fleet: the phase order (this file), the run state
//! (`state`), and a [`RunReport`] at the end. One failing host never hides the others; a dead
//! first server stops only what depends on it. `plan` is the same list through the manager's
//! dry-run gate: every phase that changes a host is planned, not applied.
//!
//! - `options`: what a run is asked to do, and the named limits of its steps.
//! - `state`: the run state (engine, per-host state by `HostId`), shared steps, the report.
//! - `phases`: the phases (title, pure selection, apply); `survey`: facts, preflight, version,
//!   decisions; `cluster_lock`: the lock on the first server, taken and released inside other
//!   round trips; `skew_guard`, `token_guard`, `quorum_guard`: refusals before any change;
//!   `prepare`: Raspberry Pi cgroups and air-gap delivery; `install`: first server, API,
//!   servers, agents, kubeconfig; `verify`: nodes Ready; `gitlab_step`: the GitLab phase.
//! - `access`: `kubeconfig` and `status`, the read-only uses of a connected fleet.

mod access;
mod cluster_lock;
mod gitlab_step;
mod install;
mod options;
mod phases;
mod prepare;
mod quorum_guard;
mod skew_guard;
mod state;
mod survey;
mod token_guard;
mod verify;

#[cfg(test)]
mod tests;

use access::merge_kubeconfig;
pub use access::{fetch_kubeconfig, status};
pub use options::{KubeconfigTarget, Mode, Reboot, UpOptions};

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::engine::{Engine, Failure, FailureKind, HostId, Manager, Output, PerHost};
use crate::inventory::{Host, Inventory, Role};
use crate::k3s::install::{InstallSpec, Join};
use crate::k3s::join_watch;
use crate::k3s::nodes::{self, NodeStatus};
use crate::k3s::{Channel, ChannelResolver, JoinToken, K3sArch, K3sVersion};
use crate::render::renderer_for;
use crate::ssh::{ExecOutput, ExecRequest, Exit};

use super::Progress;
use super::airgap;
use super::decide::{Action, Decision, decide};
use super::gitlab::{self as gitlab_phase, GitLabReport, LockRelease, PhaseContext};
use super::host_status::{HostEnd, HostLine};
use super::outcome::{HostReport, NodeRow, RunReport, Status};
use super::run_core::{RunCore, inventory_hosts, run_phases};
use super::steps;
use crate::host::facts::{self, Facts};
use crate::host::fold;
use crate::host::preflight;
use crate::k3s::remote::{self, ApiRead};
use gitlab_step::GitLabStep;
use options::{
    AIRGAP_UPLOADS, API_WAIT, BOOT_CHECK_TIMEOUT, CHANNEL_TIMEOUT, POLL_EVERY, REBOOT_WAIT,
};
use state::Runner;
use survey::FirstFacts;

/// The step that waits for the first server's API and reads from it.
const API_TITLE: &str = "wait for the API";

/// `up` (and `plan`, through the dry-run gate), in order.
fn up_phases<'i>(mode: Mode) -> Manager<'i, Runner<'i>> {
    Manager::new(mode == Mode::Plan)
        .then(phases::gather_facts())
        .then(phases::preflight())
        .then(phases::sudo_check())
        .then(phases::first_server_gate())
        .then(phases::resolve_version())
        .then(phases::decide())
        .then(phases::skew_guard())
        .then(phases::token_guard())
        .then(phases::quorum_guard())
        .then(phases::pi_cgroups())
        .then(phases::airgap())
        .then(phases::first_server())
        .then(phases::read_api())
        .then(phases::servers())
        .then(phases::agents())
        .then(phases::merge_kubeconfig())
        .then(phases::verify())
        .then(phases::mark_planned())
        .then(phases::git_lab())
}

/// Run `up` or `plan` over `engine`, connected to `hosts` (the selection; the first server is
/// added when `--limit` left it out, since everything depends on it).
pub async fn run(
    engine: Engine,
    inventory: &Inventory,
    hosts: &[Host],
    options: UpOptions,
) -> anyhow::Result<RunReport> {
    run_on(Runner::new(inventory, hosts, engine, options)?).await
}

/// The phases of `up` / `plan` over a connected run state, the lock released and the sessions
/// closed whatever happened.
async fn run_on(mut runner: Runner<'_>) -> anyhow::Result<RunReport> {
    let phases = up_phases(runner.options.mode);
    let result = run_phases(&mut runner, &phases).await;
    if runner.core.engine.is_cancelled() {
        runner.cancel_unfinished();
    }
    runner.core.finish().await;
    result?;
    Ok(runner.report())
}
