//! `restore`: bring a cluster back from an etcd snapshot the way k3s documents it, as two phase
//! lists on the run engine so the CLI can ask in between. [`SURVEY`] (read-only): take the
//! cluster lock on the first server, find k3s on every host. [`RESTORE`] (a dry run plans it):
//! check the snapshot's bytes against their sha256 once more, stop k3s on every server at once,
//! on the first server upload the snapshot and run `k3s server --cluster-reset
//! --cluster-reset-restore-path`, start it and wait for the API; then each other server in turn
//! (a failed one stops the roll): move its etcd data aside, start, wait Ready; then restart the
//! agents in one window and wait Ready. The snapshot's check against the manifest happens in the
//! CLI before any host is contacted.
//!
//! - `run`: the [`Restore`] handle the CLI drives (survey, plan, execute or dry run, abort).
//! - `state`: the run state the phases share, and the report it turns into.
//! - `survey`: the lock and survey phases; `roll`: the phases that change hosts.
//!
//! The host scripts and the reading of the survey's answer are `k3s::snapshot`'s.

use std::time::Duration;

use crate::engine::{Manager, Step, same_line};
use crate::phases::steps::first;

mod roll;
mod run;
mod state;
mod survey;

#[cfg(test)]
mod tests;

pub use run::Restore;
pub use state::{HostOutcome, HostPlan, RestoreReport, Snapshot};

use state::{RestoreRun, Stage};

/// Stopping one k3s unit (and starting it again when the restore cannot go on).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Uploading the snapshot to the first server.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// What a host's wait gets on top of its own limit (`--api-timeout`, `--ready-timeout`) before
/// the exec itself is stopped: the script stops what it started within its limit, this is for
/// the script's own end.
pub const SCRIPT_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The cluster reset, and then the first server's API, each get this long.
    pub api_timeout: Duration,
    /// Each other server and each agent: start and be Ready within this.
    pub ready_timeout: Duration,
}

/// Before the confirmation, read-only: the lock, then what is on each host.
fn survey_phases() -> Manager<'static, RestoreRun> {
    Manager::new(false)
        .then(Step::reads("lock", first, survey::lock))
        .then(Step::reads(
            "survey",
            |cx| cx.order.clone(),
            survey::survey_hosts,
        ))
}

/// After the confirmation, in order (`dry_run`: only the snapshot check runs, the rest is
/// planned).
fn restore_phases(dry_run: bool) -> Manager<'static, RestoreRun> {
    Manager::new(dry_run)
        .then(Step::reads("snapshot", first, roll::check_snapshot))
        .then(
            Step::writes("stop servers", |cx| cx.servers(), roll::stop_servers)
                .planned(|_, hosts| same_line(hosts, "stop k3s")),
        )
        .then(
            Step::writes(
                "first server",
                |cx| cx.todo(Stage::FirstServer),
                roll::first_server,
            )
            .planned(|_, hosts| same_line(hosts, Stage::FirstServer.action())),
        )
        .then(
            Step::writes(
                "servers",
                |cx| cx.todo(Stage::Servers),
                roll::rejoin_servers,
            )
            .planned(|_, hosts| same_line(hosts, Stage::Servers.action())),
        )
        .then(
            Step::writes("agents", |cx| cx.todo(Stage::Agents), roll::restart_agents)
                .planned(|_, hosts| same_line(hosts, Stage::Agents.action())),
        )
}

/// The phase titles in order, for docs and tests.
pub const SURVEY: [&str; 2] = ["lock", "survey"];
pub const RESTORE: [&str; 5] = [
    "snapshot",
    "stop servers",
    "first server",
    "servers",
    "agents",
];
