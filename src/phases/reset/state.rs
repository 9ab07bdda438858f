//! The run state of one reset: the engine, what each host is (role, node name, the step it is
//! reset in), what its survey found and how its reset ended, indexed by [`HostId`]; and the
//! run-level results (notes, kubeconfig, GitLab). The phases read and write it; `report` turns it
//! into the [`ResetReport`].

use crate::engine::{Engine, Failure, FailureKind, HostId, PerHost, PhaseRecord};
use crate::inventory::{Inventory, Role};
use crate::phases::gitlab::GitLabReport;
use crate::phases::lock::ClusterLock;
use crate::phases::outcome::Status;

use super::ResetOptions;
use super::outcome::{HostPlan, ResetHost, ResetReport, Scope};
use super::remote::Survey;

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

/// How one host's reset ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    /// How k3s was removed.
    pub method: Option<String>,
    pub removed: Vec<String>,
    pub failure: Option<Failure>,
}

impl Outcome {
    pub fn clean() -> Outcome {
        Outcome {
            status: Status::Unchanged,
            method: None,
            removed: Vec::new(),
            failure: None,
        }
    }

    /// Failed, or skipped when `failure` is of kind skipped.
    pub fn failed(failure: Failure) -> Outcome {
        Outcome {
            status: if failure.kind == FailureKind::Skipped {
                Status::Skipped
            } else {
                Status::Failed
            },
            method: None,
            removed: Vec::new(),
            failure: Some(failure),
        }
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.status, Status::Failed | Status::Skipped)
    }
}

/// Everything one reset knows between its phases.
pub struct ResetRun {
    pub engine: Engine,
    pub hosts: PerHost<HostState>,
    /// The selected hosts in execution order: agents, other servers, the first server.
    pub order: Vec<HostId>,
    pub first: HostId,
    pub scope: Scope,
    pub cluster: String,
    pub lock: ClusterLock,
    pub options: ResetOptions,
    pub messages: Vec<String>,
    /// What happened to the kubeconfig context (scope `Cluster`).
    pub kubeconfig: Option<String>,
    /// The kubeconfig could not be written.
    pub kubeconfig_failed: bool,
    pub gitlab: Option<GitLabReport>,
    /// The phases run so far, for the report.
    pub phases: Vec<PhaseRecord>,
}

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
        let first_name = crate::k3s::install::first_server(inventory)?.name.clone();
        let mut missing = Vec::new();
        let hosts = engine.per_host(|_, name| {
            let host = inventory.hosts.iter().find(|h| h.name == name);
            if host.is_none() {
                missing.push(name.to_owned());
            }
            let role = host.map_or(Role::Agent, |h| h.role);
            let step = selected.iter().any(|s| s == name).then_some(match role {
                Role::Agent => Step::Agents,
                Role::Server if name == first_name => Step::FirstServer,
                Role::Server => Step::Servers,
            });
            HostState {
                role,
                node_name: host.map_or_else(|| name.to_owned(), |h| h.node_name.clone()),
                step,
                survey: None,
                outcome: None,
                drained: false,
            }
        });
        anyhow::ensure!(
            missing.is_empty(),
            "not in the inventory: {}",
            missing.join(", ")
        );
        let first = engine.id_of(&first_name).ok_or_else(|| {
            anyhow::anyhow!("the first server {first_name} is not among the hosts of the run")
        })?;
        let order = [Step::Agents, Step::Servers, Step::FirstServer]
            .into_iter()
            .flat_map(|step| {
                hosts
                    .iter()
                    .filter(move |(_, h)| h.step == Some(step))
                    .map(|(id, _)| id)
            })
            .collect();
        let lock = ClusterLock::new(
            first,
            crate::phases::lock::new_run_id(),
            "edgeops reset",
            inventory.cluster.name.clone(),
            options.lock_stale_after,
        );
        Ok(ResetRun {
            engine,
            hosts,
            order,
            first,
            scope,
            cluster: inventory.cluster.name.clone(),
            lock,
            options,
            messages: Vec::new(),
            kubeconfig: None,
            kubeconfig_failed: false,
            gitlab: None,
            phases: Vec::new(),
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
        self.hosts[self.first]
            .outcome
            .as_ref()
            .is_some_and(|o| !o.is_failed())
    }

    /// Show a note now and keep it for the report.
    pub fn message(&mut self, text: String) {
        self.engine.note(&text);
        self.messages.push(text);
    }

    pub fn name(&self, id: HostId) -> &str {
        self.engine.name(id)
    }

    /// Per selected host, in execution order: what was found (or why the survey failed).
    pub fn plan(&self) -> Vec<HostPlan> {
        self.order
            .iter()
            .map(|&id| {
                let host = &self.hosts[id];
                HostPlan {
                    host: self.name(id).to_owned(),
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
        let log = self.engine.log();
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
                let busy = self.engine.busy(id);
                ResetHost {
                    host: self.name(id).to_owned(),
                    role: host.role.as_str(),
                    phase: host.step.map_or("-", Step::as_str),
                    installed: found
                        .as_ref()
                        .map_or_else(|| "?".to_owned(), Survey::installed),
                    result: match outcome.status {
                        Status::Done => "reset",
                        Status::Unchanged => "already clean",
                        Status::Skipped => "skipped",
                        _ => "failed",
                    }
                    .to_owned(),
                    status: outcome.status,
                    failure: outcome.failure.as_ref().map(|f| f.kind),
                    exit_code: outcome.failure.as_ref().and_then(|f| f.exit_code),
                    method: outcome.method,
                    removed: outcome.removed,
                    reason: outcome.failure.map(|f| f.reason),
                    seconds: busy.time.as_secs_f64(),
                    commands: busy.commands,
                    log: log
                        .host_file(self.engine.name(id))
                        .map(|p| p.display().to_string()),
                    found,
                }
            })
            .collect();
        ResetReport {
            cluster: self.cluster.clone(),
            scope: self.scope,
            hosts,
            kubeconfig: self.kubeconfig.take(),
            log_dir: log.dir().map(|d| d.display().to_string()),
            messages: std::mem::take(&mut self.messages),
            failed: self.kubeconfig_failed,
            gitlab: self.gitlab.take(),
            phases: std::mem::take(&mut self.phases),
        }
    }
}
