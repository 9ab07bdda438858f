//! What a reset found and did, per host and for the cluster: plain data, serialisable for
//! `--output json`; the CLI draws the tables.

use serde::Serialize;

use crate::engine::PhaseRecord;
use crate::phases::gitlab::GitLabReport;
use crate::phases::host_status::HostLine;

use crate::k3s::uninstall::Survey;

/// Whole cluster, or some hosts leaving a cluster that stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Cluster,
    Hosts,
}

/// One selected host, as surveyed.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub role: &'static str,
    /// `agents`, `servers` or `first server`: the step it is reset in.
    pub phase: &'static str,
    /// What was found, or `None` when the survey failed (then `error` says why).
    pub found: Option<Survey>,
    pub error: Option<String>,
}

/// One host's line in the final report: the shared columns (`result`: `reset`, `already
/// clean`, `failed`, `skipped`) and what a reset adds.
#[derive(Debug, Clone, Serialize)]
pub struct ResetHost {
    #[serde(flatten)]
    pub line: HostLine,
    pub phase: &'static str,
    /// What was installed before (`agent v1.31.4+k3s1`, `-`).
    pub installed: String,
    /// How k3s was removed (the uninstall script, or the fallback).
    pub method: Option<String>,
    pub removed: Vec<String>,
    pub found: Option<Survey>,
}

crate::phases::host_status::host_row!(ResetHost);

/// The whole reset; hosts in execution order.
#[derive(Debug, Clone, Serialize)]
pub struct ResetReport {
    pub cluster: String,
    pub scope: Scope,
    pub hosts: Vec<ResetHost>,
    /// What happened to the kubeconfig context.
    pub kubeconfig: Option<String>,
    pub log_dir: Option<String>,
    pub messages: Vec<String>,
    /// Something outside the host rows failed (the kubeconfig could not be written).
    pub failed: bool,
    /// `--gitlab`: what was removed from GitLab, item by item; `None` without `--gitlab`.
    pub gitlab: Option<GitLabReport>,
    /// The phases in order, how each ended and how long it took.
    pub phases: Vec<PhaseRecord>,
}

impl ResetReport {
    pub fn failed_hosts(&self) -> usize {
        self.hosts.iter().filter(|h| h.is_failure()).count()
    }
}

/// `reset --dry-run`: what was found and what each phase would do; nothing was changed.
#[derive(Debug, Clone, Serialize)]
pub struct ResetPlan {
    pub cluster: String,
    pub scope: Scope,
    pub dry_run: bool,
    /// Per selected host, in execution order.
    pub hosts: Vec<HostPlan>,
    /// Why the reset would stop (the quorum check refused, or Ctrl-C).
    pub refused: Option<String>,
    pub messages: Vec<String>,
    /// Each phase: planned per host, nothing to do, or not reached.
    pub phases: Vec<PhaseRecord>,
}
