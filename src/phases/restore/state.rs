//! The run state of one restore: the engine, what each host is (role, node name, the step it is
//! restored in), what its survey found and how its restore ended, indexed by [`HostId`]; the
//! verified snapshot; and the report the state turns into.

use std::time::Duration;

use serde::Serialize;

use crate::engine::{Engine, Failure, HostId, PerHost, PhaseRecord};
use crate::inventory::{Inventory, Role};
use crate::k3s::snapshot::Installed;
use crate::phases::host_status::{HostEnd, HostLine, Status};
use crate::phases::run_core::{RunCore, inventory_hosts};

use super::RestoreOptions;

/// The step a host is restored in (the plan's PHASE column), in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    FirstServer,
    Servers,
    Agents,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::FirstServer => "first server",
            Stage::Servers => "servers",
            Stage::Agents => "agents",
        }
    }

    /// What the restore will do on a host of this step, for the plan.
    pub fn action(self) -> &'static str {
        match self {
            Stage::FirstServer => {
                "stop k3s, upload the snapshot, k3s --cluster-reset --cluster-reset-restore-path, start, wait for the API"
            }
            Stage::Servers => {
                "stop k3s; after the first server: move server/db aside, start, wait Ready (one at a time)"
            }
            Stage::Agents => "restart k3s-agent after the servers, wait Ready",
        }
    }
}

/// The snapshot to restore, checked against its manifest by the CLI.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub file: String,
    /// The manifest's sha256 of it.
    pub sha256: String,
    pub bytes: Vec<u8>,
}

/// One host of the run.
#[derive(Debug)]
pub struct HostState {
    pub role: Role,
    pub node_name: String,
    pub step: Stage,
    /// What the survey found, or why it could not tell; `None` before the survey.
    pub survey: Option<Result<Installed, Failure>>,
    /// How its restore ended (what it did, or why not) and how long it took; `None` while
    /// there is still something to do.
    pub outcome: Option<(Result<String, Failure>, Duration)>,
}

impl HostState {
    /// Why this host cannot take part (unreachable, survey failed, k3s missing).
    pub fn problem(&self) -> Option<String> {
        let want = match self.role {
            Role::Server => "k3s",
            Role::Agent => "k3s-agent",
        };
        match &self.survey {
            None => Some("not surveyed".to_owned()),
            Some(Err(failure)) => Some(failure.reason.clone()),
            Some(Ok(found)) if !found.k3s || found.unit.as_deref() != Some(want) => Some(format!(
                "k3s is not installed as {want}.service (a re-flashed board?): run `edgeops up \
                 INVENTORY` first, then restore"
            )),
            Some(Ok(_)) => None,
        }
    }
}

/// Everything one restore knows between its phases.
pub struct RestoreRun {
    pub core: RunCore,
    pub hosts: PerHost<HostState>,
    /// Every host in execution order: the first server, the other servers, the agents.
    pub order: Vec<HostId>,
    pub options: RestoreOptions,
    /// Set by the CLI before the restore phases run.
    pub snapshot: Option<Snapshot>,
    /// The suffix each other server's old `server/db` is moved aside to.
    pub aside: String,
    /// Why the run stopped, for the hosts it did not reach.
    pub stopped: Option<String>,
}

crate::phases::run_core::impl_run!(RestoreRun);

impl RestoreRun {
    /// The run state over `engine` (every host of the inventory, connected or not).
    pub fn new(
        engine: Engine,
        inventory: &Inventory,
        options: RestoreOptions,
    ) -> anyhow::Result<RestoreRun> {
        let core = RunCore::new(engine, inventory, "edgeops restore")?;
        let first = core.first;
        let hosts = inventory_hosts(&core.engine, &inventory.hosts)?.map(|id, host| HostState {
            role: host.role,
            node_name: host.node_name.clone(),
            step: match host.role {
                Role::Server if id == first => Stage::FirstServer,
                Role::Server => Stage::Servers,
                Role::Agent => Stage::Agents,
            },
            survey: None,
            outcome: None,
        });
        // Execution order: by step, inventory order within one (a stable sort).
        let mut order: Vec<HostId> = hosts.ids().collect();
        order.sort_by_key(|&id| hosts[id].step);
        let aside = format!("edgeops-before-restore-{}", core.lock.run_id());
        Ok(RestoreRun {
            core,
            hosts,
            order,
            options,
            snapshot: None,
            aside,
            stopped: None,
        })
    }

    /// The hosts of `step` that still have something to do, in execution order.
    pub fn todo(&self, step: Stage) -> Vec<HostId> {
        self.order
            .iter()
            .copied()
            .filter(|&id| self.hosts[id].step == step && self.hosts[id].outcome.is_none())
            .collect()
    }

    /// The servers (the first one too) that still have something to do.
    pub fn servers(&self) -> Vec<HostId> {
        let mut servers = self.todo(Stage::FirstServer);
        servers.extend(self.todo(Stage::Servers));
        servers
    }

    /// Stop the run: every host not done yet is skipped with `why` (the report says
    /// `not started: WHY`).
    pub fn stop(&mut self, why: String) -> crate::engine::Flow {
        self.stopped = Some(why.clone());
        crate::engine::Flow::Stop(why)
    }

    /// Per host, in execution order: what was found and what the restore will do.
    pub fn plan(&self) -> Vec<HostPlan> {
        self.order
            .iter()
            .map(|&id| {
                let host = &self.hosts[id];
                let found = host.survey.as_ref().and_then(|s| s.as_ref().ok());
                HostPlan {
                    host: self.core.name(id).to_owned(),
                    role: host.role.as_str(),
                    node: host.node_name.clone(),
                    phase: host.step.as_str(),
                    k3s_installed: found.is_some_and(|f| f.k3s),
                    unit: found.and_then(|f| f.unit.clone()),
                    active: found.is_some_and(|f| f.active),
                    action: host.step.action(),
                    problem: host.problem(),
                }
            })
            .collect()
    }

    /// The final report; hosts in execution order.
    pub fn report(&mut self) -> RestoreReport {
        let stopped = self.stopped.clone();
        let hosts = self
            .order
            .iter()
            .map(|&id| {
                let host = &self.hosts[id];
                let (result, took) = host.outcome.clone().unwrap_or_else(|| {
                    let why = stopped.as_deref().unwrap_or("the run stopped before it");
                    (
                        Err(Failure::skipped(format!("not started: {why}"))),
                        Duration::ZERO,
                    )
                });
                let (end, detail) = match result {
                    Ok(said) => (HostEnd::new(Status::Done, "restored"), said),
                    Err(failure) => {
                        let reason = failure.reason.clone();
                        (HostEnd::failed(failure), reason)
                    }
                };
                HostOutcome {
                    line: HostLine::new(&self.core.engine, id, host.role, &end).took(took),
                    detail,
                }
            })
            .collect();
        RestoreReport {
            cluster: self.core.cluster.clone(),
            snapshot: self
                .snapshot
                .as_ref()
                .map(|s| s.file.clone())
                .unwrap_or_default(),
            hosts,
            messages: std::mem::take(&mut self.core.messages),
            log_dir: self.core.log_dir(),
            phases: std::mem::take(&mut self.core.phases),
        }
    }
}

/// What the survey found on one host, and what the restore will do there.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub role: &'static str,
    pub node: String,
    /// `first server`, `servers` or `agents`: the order of execution.
    pub phase: &'static str,
    pub k3s_installed: bool,
    pub unit: Option<String>,
    pub active: bool,
    pub action: &'static str,
    /// Why this host cannot take part (unreachable, survey failed, k3s missing).
    pub problem: Option<String>,
}

/// One host's result: the shared columns (`result`: `restored`, `failed`, `skipped`; `seconds`:
/// the wall time of its part; `commands`: those run on the host itself, its waits run on the
/// first server) and what it said or why it failed.
#[derive(Debug, Clone, Serialize)]
pub struct HostOutcome {
    #[serde(flatten)]
    pub line: HostLine,
    pub detail: String,
}

crate::phases::host_status::host_row!(HostOutcome);

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub cluster: String,
    pub snapshot: String,
    pub hosts: Vec<HostOutcome>,
    pub messages: Vec<String>,
    pub log_dir: Option<String>,
    /// The phases run, in order, for the report.
    pub phases: Vec<PhaseRecord>,
}

impl RestoreReport {
    pub fn failed_hosts(&self) -> usize {
        self.hosts.iter().filter(|h| h.is_failure()).count()
    }
}
