//! The run state of one reset: the engine, what each host is (role, node name, the step it is
//! reset in), what its survey found and how its reset ended, indexed by [`HostId`]; and the
//! run-level results (notes, kubeconfig, GitLab). The phases read and write it; `report` turns it
//! into the [`ResetReport`].

use crate::engine::{Engine, Failure, HostId, PerHost};
use crate::inventory::{Inventory, Role};
use crate::phases::gitlab::GitLabReport;
use crate::phases::host_status::{HostEnd, HostLine, Status};
use crate::phases::run_core::{RunCore, inventory_hosts};

use super::ResetOptions;
use super::outcome::{HostPlan, ResetHost, ResetReport, Scope};
use crate::k3s::uninstall::Survey;

/// The step a selected host is reset in (the report's PHASE column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// All at once, first.
    Agents,
    /// Joined servers, one at a time.
    Servers,
    /// The first server, last (scope `Cluster` only).
    FirstServer,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Agents => "agents",
            Step::Servers => "servers",
            Step::FirstServer => "first server",
        }
    }
}

/// One host of the run.
#[derive(Debug)]
pub struct HostState {
    pub role: Role,
    pub node_name: String,
    /// `None`: not selected (the first server of a cluster that stays: the lock and the Node
    /// deletions go through it).
    pub step: Option<Step>,
    /// What the survey found, or why it could not tell; `None` before the survey.
    pub survey: Option<Result<Survey, Failure>>,
    /// How its reset ended; `None` while there is still something to do.
    pub outcome: Option<Outcome>,
    /// Cordoned and drained before its uninstall (`reset --limit`).
    pub drained: bool,
}

/// How one host's reset ended: its end (`reset`, `already clean`, failed or skipped), and how
/// k3s was removed and what, as far as the uninstall script got.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub end: HostEnd,
    pub method: Option<String>,
    pub removed: Vec<String>,
}

impl Outcome {
    pub fn reset(method: String, removed: Vec<String>) -> Outcome {
        Outcome {
            end: HostEnd::new(Status::Done, "reset"),
            method: Some(method),
            removed,
        }
    }

    pub fn clean() -> Outcome {
        Outcome {
            end: HostEnd::new(Status::Unchanged, "already clean"),
            method: None,
            removed: Vec::new(),
        }
    }

    /// Failed, or skipped when `failure` is of kind skipped.
    pub fn failed(failure: Failure) -> Outcome {
        Outcome {
            end: HostEnd::failed(failure),
            method: None,
            removed: Vec::new(),
        }
    }

    pub fn is_failed(&self) -> bool {
        self.end.is_failed()
    }
}

/// Everything one reset knows between its phases.
pub struct ResetRun {
    pub core: RunCore,
    pub hosts: PerHost<HostState>,
    /// The selected hosts in execution order: agents, other servers, the first server.
    pub order: Vec<HostId>,
    pub scope: Scope,
    pub options: ResetOptions,
    /// What happened to the kubeconfig context (scope `Cluster`).
    pub kubeconfig: Option<String>,
    /// The kubeconfig could not be written.
    pub kubeconfig_failed: bool,
    pub gitlab: Option<GitLabReport>,
}

crate::phases::run_core::impl_run!(ResetRun);

impl ResetRun {
    /// The run state over `engine` (the selected hosts and the first server, connected or not).
    /// `selected`: host names of the reset.
    pub fn new(
        engine: Engine,
        inventory: &Inventory,
        scope: Scope,
        selected: &[String],
        options: ResetOptions,
    ) -> anyhow::Result<ResetRun> {
        let core = RunCore::new(engine, inventory, "edgeops reset")?;
        let first = core.first;
        let hosts = inventory_hosts(&core.engine, &inventory.hosts)?.map(|id, host| HostState {
            role: host.role,
            node_name: host.node_name.clone(),
            step: selected.contains(&host.name).then_some(match host.role {
                Role::Agent => Step::Agents,
                Role::Server if id == first => Step::FirstServer,
                Role::Server => Step::Servers,
            }),
            survey: None,
            outcome: None,
            drained: false,
        });
        let order = [Step::Agents, Step::Servers, Step::FirstServer]
            .into_iter()
            .flat_map(|step| {
                hosts
                    .iter()
                    .filter(move |(_, h)| h.step == Some(step))
                    .map(|(id, _)| id)
            })
            .collect();
        Ok(ResetRun {
            core,
            hosts,
            order,
            scope,
            options,
            kubeconfig: None,
            kubeconfig_failed: false,
            gitlab: None,
        })
    }

    /// The selected hosts of `step` that still have something to do, in execution order.
    pub fn todo(&self, step: Step) -> Vec<HostId> {
        self.order
            .iter()
            .copied()
            .filter(|&id| self.hosts[id].step == Some(step) && self.hosts[id].outcome.is_none())
            .collect()
    }

    /// Whether the first server's reset went through (scope `Cluster`).
    pub fn first_reset(&self) -> bool {
        self.hosts[self.core.first]
            .outcome
            .as_ref()
            .is_some_and(|o| !o.is_failed())
    }

    /// Per selected host, in execution order: what was found (or why the survey failed).
    pub fn plan(&self) -> Vec<HostPlan> {
        self.order
            .iter()
            .map(|&id| {
                let host = &self.hosts[id];
                HostPlan {
                    host: self.core.name(id).to_owned(),
                    role: host.role.as_str(),
                    phase: host.step.map_or("-", Step::as_str),
                    found: host.survey.as_ref().and_then(|s| s.as_ref().ok()).cloned(),
                    error: match &host.survey {
                        Some(Err(failure)) => Some(failure.reason.clone()),
                        Some(Ok(_)) => None,
                        None => Some("not surveyed".to_owned()),
                    },
                }
            })
            .collect()
    }

    /// The final report; hosts in execution order.
    pub fn report(&mut self) -> ResetReport {
        let engine = &self.core.engine;
        let hosts = self
            .order
            .iter()
            .map(|&id| {
                let host = &self.hosts[id];
                let outcome = host.outcome.clone().unwrap_or_else(|| {
                    Outcome::failed(Failure::skipped(
                        "not attempted (the run stopped before it)",
                    ))
                });
                let found = host.survey.as_ref().and_then(|s| s.as_ref().ok()).cloned();
                ResetHost {
                    line: HostLine::new(engine, id, host.role, &outcome.end),
                    phase: host.step.map_or("-", Step::as_str),
                    installed: found
                        .as_ref()
                        .map_or_else(|| "?".to_owned(), Survey::installed),
                    method: outcome.method,
                    removed: outcome.removed,
                    found,
                }
            })
            .collect();
        ResetReport {
            cluster: self.core.cluster.clone(),
            scope: self.scope,
            hosts,
            kubeconfig: self.kubeconfig.take(),
            log_dir: self.core.log_dir(),
            messages: std::mem::take(&mut self.core.messages),
            failed: self.kubeconfig_failed,
            gitlab: self.gitlab.take(),
            phases: std::mem::take(&mut self.core.phases),
        }
    }
}
