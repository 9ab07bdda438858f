//! `reset`: uninstall k3s and edgeops's files from the selected hosts, agents first (all at
//! once), then the other servers one at a time, the first server last; then remove the cluster
//! from the user's kubeconfig. Two phase lists, so the CLI can ask in between: [`SURVEY`] (take
//! the `up` lock, one survey round trip per host) and [`RESET`] (a dry run plans it instead).
//!
//! Scope: with the first server selected, `reset` wipes the cluster, and then every host of the
//! inventory must be selected (a first server reset under agents that stay would leave them
//! orphaned). Without it, `reset` removes hosts from a cluster that stays: their Node objects
//! are deleted through the first server after their uninstall, so a re-flashed board rejoins
//! under the same name, and the kubeconfig is left alone.
//!
//! - `run`: the [`Reset`] handle the CLI drives (survey, plan, execute or dry run, abort).
//! - `state`: the run state the phases share; `scope`: which hosts a reset may take.
//! - `survey`, `quorum`, `drain`, `uninstall`, `nodes`, `kubeconfig`, `gitlab`: the phases.
//! - `outcome`: the report. The host scripts (survey, uninstall, Node deletion) and their
//!   parsers are k3s knowledge: `crate::k3s::uninstall`.

use crate::engine::{self, Manager};

mod drain;
pub mod gitlab;
pub mod kubeconfig;
mod nodes;
pub mod outcome;
mod quorum;
mod run;
mod scope;
mod state;
mod survey;
mod uninstall;

#[cfg(test)]
mod tests;

pub use crate::k3s::kubeconfig::KubeconfigEntry;
pub use gitlab::GitLabReset;
pub use outcome::{HostPlan, ResetHost, ResetReport, Scope};
pub use run::Reset;
pub use scope::{ResetError, scope};

use drain::{drain_hosts, plan_drain, to_drain};
use gitlab::{clean_gitlab, first_if_gitlab, plan_gitlab};
use kubeconfig::{first_if_cluster, plan_kubeconfig, remove_context};
use nodes::{delete_nodes, first_if_hosts_left, plan_delete_nodes};
use quorum::{check_quorum, first_if_servers_leave};
use state::{ResetRun, Step};
use survey::{survey_hosts, take_lock};

use crate::phases::steps::{every_host, first};

/// Before the confirmation, read-only: the lock, then what is on each host.
fn survey_phases() -> Manager<'static, ResetRun> {
    Manager::new(false)
        .then(engine::Step::reads("lock", first, take_lock))
        .then(engine::Step::reads("survey", every_host, survey_hosts))
}

/// After the confirmation, in order (`dry_run`: only the read-only quorum check runs, the rest
/// is planned). Draining a node before its uninstall goes between the quorum check and the
/// agents: the hosts' pods move while the cluster still has every member.
fn reset_phases(dry_run: bool) -> Manager<'static, ResetRun> {
    Manager::new(dry_run)
        .then(engine::Step::reads(
            "quorum check",
            first_if_servers_leave,
            check_quorum,
        ))
        .then(engine::Step::writes("drain", to_drain, drain_hosts).planned(plan_drain))
        .then(uninstall::Uninstall(Step::Agents))
        .then(uninstall::Uninstall(Step::Servers))
        .then(uninstall::Uninstall(Step::FirstServer))
        .then(
            engine::Step::writes("nodes", first_if_hosts_left, delete_nodes)
                .planned(plan_delete_nodes),
        )
        .then(
            engine::Step::writes("kubeconfig", first_if_cluster, remove_context)
                .planned(plan_kubeconfig),
        )
        .then(engine::Step::writes("gitlab", first_if_gitlab, clean_gitlab).planned(plan_gitlab))
}

/// The phase titles in order, for docs and tests.
pub const SURVEY: [&str; 2] = ["lock", "survey"];
pub const RESET: [&str; 8] = [
    "quorum check",
    "drain",
    "agents",
    "servers",
    "first server",
    "nodes",
    "kubeconfig",
    "gitlab",
];

#[derive(Debug, Clone)]
pub struct ResetOptions {
    /// The user's kubeconfig and the cluster's context in it.
    pub kubeconfig: KubeconfigEntry,
    /// `--gitlab` (scope `Cluster` only): what to remove from GitLab once the first server is
    /// reset.
    pub gitlab: Option<GitLabReset>,
    /// Scope `Hosts`: cordon and drain each host through the first server before it leaves
    /// (`None`: `--skip-drain`).
    pub drain: Option<crate::k3s::drain::DrainOptions>,
}
