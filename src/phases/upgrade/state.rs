//! The run state of one `edgeops upgrade` (the engine, each host's state by [`HostId`], the
//! target, the lock, notes) and the report it becomes.

use std::time::Duration;

use serde::Serialize;

use crate::engine::{Failure, HostId, PerHost, PhaseRecord};
use crate::host::facts::Facts;
use crate::inventory::{Host, Inventory, Role};
use crate::k3s::K3sVersion;
use crate::k3s::airgap::Artifacts;
use crate::k3s::install::InstallSpec;
use crate::k3s::nodes::NodeStatus;
use crate::phases::host_status::{HostEnd, HostLine};
use crate::phases::outcome::{NodeRow, Status};
use crate::phases::run_core::RunCore;

use super::options::UpgradeOptions;
use super::plan::HostNeed;

/// One host's line in the upgrade report: the shared columns (`result`: `upgraded`, `already
/// at V`, `failed`, `skipped`, `would upgrade ...`; `seconds`: the wall time of its upgrade, its
/// own steps and the kubectl steps for it) and the versions before and after.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeHost {
    #[serde(flatten)]
    pub line: HostLine,
    /// The version it ran before (node's kubeletVersion, else the binary's).
    pub from: Option<String>,
    /// The version it runs after the run (with `--dry-run`: would run).
    pub to: Option<String>,
}

crate::phases::host_status::host_row!(UpgradeHost);

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

/// One host of the run, between phases.
pub(super) struct HostState {
    pub host: Host,
    /// In the `--limit` selection (upgraded and reported); else only used (the first server).
    pub selected: bool,
    pub facts: Option<Facts>,
    pub need: Option<HostNeed>,
    /// The install at the target: set only for hosts that need the upgrade.
    pub spec: Option<InstallSpec>,
    pub end: Option<HostEnd>,
    /// Wall time of its upgrade.
    pub spent: Duration,
}

impl HostState {
    /// Record how the host ended; the first ending wins.
    pub fn finish(&mut self, status: Status, result: impl Into<String>, failure: Option<Failure>) {
        if self.end.is_none() {
            self.end = Some(HostEnd {
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
    /// The engine, the first server (the lock and the API live there), the cluster lock `up`
    /// and `reset` take, the notes and the phases run.
    pub(super) core: RunCore,
    pub(super) inventory: Inventory,
    pub(super) options: UpgradeOptions,
    pub(super) hosts: PerHost<HostState>,
    /// The node list read before deciding (`Err`: why it could not be read).
    pub(super) observed: Result<Vec<NodeStatus>, String>,
    pub(super) target: Option<K3sVersion>,
    pub(super) target_source: Option<String>,
    /// Air-gapped clusters: the target release, verified on the workstation.
    pub(super) artifacts: Option<Artifacts>,
    /// The node table read at the end.
    pub(super) nodes: Vec<NodeRow>,
}

crate::phases::run_core::impl_run!(Upgrade);

impl Upgrade {
    /// Show a note now and keep it for the report.
    pub(super) fn message(&mut self, text: String) {
        self.core.message(text);
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

    pub(super) fn report(mut self) -> UpgradeReport {
        let target = self.target.as_ref().map(ToString::to_string);
        let hosts = self
            .selected()
            .map(|(id, state)| {
                let end = state
                    .end
                    .clone()
                    .unwrap_or_else(|| HostEnd::failed(Failure::skipped("not reached")));
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
                    line: HostLine::new(&self.core.engine, id, state.host.role, &end)
                        .took(state.spent),
                    from,
                    to,
                }
            })
            .collect();
        UpgradeReport {
            cluster: self.core.cluster.clone(),
            dry_run: self.options.dry_run,
            target,
            target_source: self.target_source,
            hosts,
            nodes: self.nodes,
            phases: std::mem::take(&mut self.core.phases),
            messages: std::mem::take(&mut self.core.messages),
            log_dir: self.core.log_dir(),
        }
    }
}
