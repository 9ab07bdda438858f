//! What a reset found and did, per host and for the cluster: plain data, serialisable for
//! `--output json`; the CLI draws the tables.

use serde::Serialize;

use super::gitlab::GitLabReport;
use super::host_status::Status;
use super::reset_remote::Survey;

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

/// One host's line in the final report.
#[derive(Debug, Clone, Serialize)]
pub struct ResetHost {
    pub host: String,
    pub role: &'static str,
    pub phase: &'static str,
    /// What was installed before (`agent v1.31.4+k3s1`, `-`).
    pub installed: String,
    pub status: Status,
    /// `reset`, `already clean`, `failed`.
    pub result: String,
    /// How k3s was removed (the uninstall script, or the fallback).
    pub method: Option<String>,
    pub removed: Vec<String>,
    pub reason: Option<String>,
    pub seconds: f64,
    pub commands: u32,
    pub log: Option<String>,
    pub found: Option<Survey>,
}

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
}

impl ResetReport {
    pub fn failed_hosts(&self) -> usize {
        self.hosts
            .iter()
            .filter(|h| matches!(h.status, Status::Failed | Status::Skipped))
            .count()
    }
}
