//! The run state of one `edgeops upgrade` (the engine, each host's state by [`HostId`], the
//! target, the lock, notes) and the report it becomes.

use std::time::Duration;

use serde::Serialize;

use crate::engine::{Engine, Failure, FailureKind, HostId, PerHost, PhaseRecord};
use crate::inventory::{Host, Inventory, Role};
use crate::k3s::K3sVersion;
use crate::k3s::airgap::Artifacts;
use crate::k3s::install::InstallSpec;
use crate::k3s::nodes::NodeStatus;
use crate::phases::facts::Facts;
use crate::phases::outcome::{NodeRow, Status};

use super::options::UpgradeOptions;
use super::plan::HostNeed;

/// One host's line in the upgrade report.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeHost {
    pub host: String,
    pub role: &'static str,
    /// The version it ran before (node's kubeletVersion, else the binary's).
    pub from: Option<String>,
    /// The version it runs after the run (with `--dry-run`: would run).
    pub to: Option<String>,
    pub status: Status,
    /// `upgraded`, `already at V`, `failed`, `skipped`, `would upgrade ...`.
    pub result: String,
    /// Why it failed or was skipped, as a kind a script branches on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
    /// The exit code, when the failure is a command that exited non-zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    pub reason: Option<String>,
    /// Time spent upgrading this host (its own steps and the kubectl steps for it).
    pub seconds: f64,
    pub log: Option<String>,
}

impl UpgradeHost {
    pub fn is_failure(&self) -> bool {
        matches!(self.status, Status::Failed | Status::Skipped)
    }

    /// The RESULT column: the result, and for a failure its kind (`failed (timed out)`).
    pub fn result_text(&self) -> String {
        match (self.failure, self.exit_code) {
            (Some(FailureKind::Exited), Some(code)) => format!("{} (exit {code})", self.result),
            (Some(kind), _) if kind.as_str() != self.result => {
                format!("{} ({})", self.result, kind.as_str())
            }
            _ => self.result.clone(),
        }
    }
}

/// The whole upgrade run.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeReport {
    pub cluster: String,
    /// `--dry-run`: nothing was changed; `to` and `result` say what would be.
    pub dry_run: bool,
    /// The resolved target, and where it came from.
    pub target: Option<String>,
    pub target_source: Option<String>,
    pub hosts: Vec<UpgradeHost>,
    /// The node table read at the end.
    pub nodes: Vec<NodeRow>,
    /// Each phase of the run, in order, and how it ended.
    pub phases: Vec<PhaseRecord>,
    pub messages: Vec<String>,
    pub log_dir: Option<String>,
}

impl UpgradeReport {
    pub fn failed_hosts(&self) -> usize {
        self.hosts.iter().filter(|h| h.is_failure()).count()
    }
}

/// How a host's part of the run ended.
#[derive(Debug, Clone)]
pub(super) struct End {
    pub status: Status,
    pub result: String,
    pub failure: Option<Failure>,
}

/// One host of the run, between phases.
pub(super) struct HostState {
    pub host: Host,
    /// In the `--limit` selection (upgraded and reported); else only used (the first server).
    pub selected: bool,
    pub facts: Option<Facts>,
    pub need: Option<HostNeed>,
    /// The install at the target: set only for hosts that need the upgrade.
    pub spec: Option<InstallSpec>,
    pub end: Option<End>,
    /// Wall time of its upgrade.
    pub spent: Duration,
}

impl HostState {
    /// Record how the host ended; the first ending wins.
    pub fn finish(&mut self, status: Status, result: impl Into<String>, failure: Option<Failure>) {
        if self.end.is_none() {
            self.end = Some(End {
                status,
                result: result.into(),
                failure,
            });
        }
    }

    pub fn fail(&mut self, failure: Failure) {
        self.finish(Status::Failed, "failed", Some(failure));
    }

    pub fn skip(&mut self, reason: impl Into<String>) {
        self.finish(Status::Skipped, "skipped", Some(Failure::skipped(reason)));
    }

    /// Selected, decided to upgrade, and not ended yet.
    pub fn pending(&self) -> bool {
        self.selected && self.end.is_none() && self.spec.is_some()
    }

    pub fn is_server(&self) -> bool {
        self.host.role == Role::Server
    }

    pub fn failed(&self) -> bool {
        self.end
            .as_ref()
            .is_some_and(|e| e.status == Status::Failed)
    }
}

/// The state of one `edgeops upgrade` run, handed from phase to phase.
pub struct Upgrade {
    pub(super) engine: Engine,
    pub(super) inventory: Inventory,
    pub(super) options: UpgradeOptions,
    pub(super) hosts: PerHost<HostState>,
    /// The first server: the lock and the API live there.
    pub(super) first: HostId,
    /// The cluster lock `up` and `reset` take (the same file and script), on the first server.
    pub(super) lock: crate::phases::lock::ClusterLock,
    /// The node list read before deciding (`Err`: why it could not be read).
    pub(super) observed: Result<Vec<NodeStatus>, String>,
    pub(super) target: Option<K3sVersion>,
    pub(super) target_source: Option<String>,
    /// Air-gapped clusters: the target release, verified on the workstation.
    pub(super) artifacts: Option<Artifacts>,
    /// The node table read at the end.
    pub(super) nodes: Vec<NodeRow>,
    pub(super) messages: Vec<String>,
}

impl Upgrade {
    /// Show a note now and keep it for the report.
    pub(super) fn message(&mut self, text: String) {
        self.engine.note(&text);
        self.messages.push(text);
    }

    /// The resolved target (an error only if a phase ran before `resolve`: a bug in the order).
    pub(super) fn target(&self) -> anyhow::Result<K3sVersion> {
        self.target
            .clone()
            .ok_or_else(|| anyhow::anyhow!("upgrade: the target version was not resolved"))
    }

    /// The selected hosts, in inventory order.
    pub(super) fn selected(&self) -> impl Iterator<Item = (HostId, &HostState)> {
        self.hosts.iter().filter(|(_, s)| s.selected)
    }

    /// The selected hosts for which `keep` holds (a phase's selection).
    pub(super) fn selected_where(&self, keep: impl Fn(&HostState) -> bool) -> Vec<HostId> {
        self.selected()
            .filter(|(_, s)| keep(s))
            .map(|(id, _)| id)
            .collect()
    }

    /// The target as text, empty before it is resolved (for plan lines).
    pub(super) fn target_text(&self) -> String {
        self.target
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    pub(super) fn report(self, phases: Vec<PhaseRecord>, log_dir: Option<String>) -> UpgradeReport {
        let target = self.target.as_ref().map(ToString::to_string);
        let hosts = self
            .selected()
            .map(|(_, state)| {
                let end = state.end.clone().unwrap_or(End {
                    status: Status::Skipped,
                    result: "skipped".into(),
                    failure: Some(Failure::skipped("not reached")),
                });
                let from = state
                    .need
                    .as_ref()
                    .and_then(|n| n.from.as_ref())
                    .map(ToString::to_string);
                let to = match end.status {
                    Status::Done | Status::Unchanged | Status::Planned => target.clone(),
                    Status::Failed | Status::Skipped => from.clone(),
                };
                UpgradeHost {
                    host: state.host.name.clone(),
                    role: state.host.role.as_str(),
                    from,
                    to,
                    status: end.status,
                    result: end.result,
                    failure: end.failure.as_ref().map(|f| f.kind),
                    exit_code: end.failure.as_ref().and_then(|f| f.exit_code),
                    reason: end.failure.map(|f| f.reason),
                    seconds: state.spent.as_secs_f64(),
                    log: self
                        .engine
                        .log()
                        .host_file(&state.host.name)
                        .map(|p| p.display().to_string()),
                }
            })
            .collect();
        UpgradeReport {
            cluster: self.inventory.cluster.name.clone(),
            dry_run: self.options.dry_run,
            target,
            target_source: self.target_source,
            hosts,
            nodes: self.nodes,
            phases,
            messages: self.messages,
            log_dir,
        }
    }
}
