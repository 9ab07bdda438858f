//! What a run of `up`, `plan` or `status` found and did, per host and for the cluster: plain
//! data, serialisable for `--output json`; the CLI draws the tables. Also what each host's
//! remote work cost (time, commands) and the short reason taken from a command's output.

use serde::Serialize;

use crate::engine::FailureKind;
use crate::k3s::nodes::{ConditionStatus, NodeStatus};

use super::decide::Decision;
use super::facts::Facts;

pub use super::host_status::Status;

/// One host's line in the final table.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub role: &'static str,
    /// k3s architecture (`arm64`), or the raw `uname -m` when k3s has none.
    pub arch: Option<String>,
    /// The k3s version on the host after the run.
    pub version: Option<String>,
    pub status: Status,
    /// What `up` did or would do (`installed`, `nothing to do`, ...).
    pub result: String,
    pub decision: Option<Decision>,
    pub reason: Option<String>,
    /// On a failed or skipped host: the kind (`timed_out`, `exited`, ...), for scripts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
    /// On a host whose command exited non-zero: its exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    pub warnings: Vec<String>,
    /// Time spent in remote steps on this host.
    pub seconds: f64,
    /// Remote commands run on this host (each one SSH round trip plus its own work).
    pub commands: u32,
    /// This host's log file in the run folder.
    pub log: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
}

impl HostReport {
    pub fn is_failure(&self) -> bool {
        matches!(self.status, Status::Failed | Status::Skipped)
    }
}

/// One node as the cluster reports it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub ready: String,
    pub roles: String,
    pub version: String,
    pub arch: String,
    /// Why it is not as expected (empty: fine, or not in the inventory).
    pub problems: Vec<String>,
}

impl NodeRow {
    pub fn from_status(node: &NodeStatus, problems: Vec<String>) -> NodeRow {
        NodeRow {
            name: node.name.clone(),
            ready: match node.ready {
                ConditionStatus::True => "Ready".into(),
                ConditionStatus::False => "NotReady".into(),
                ConditionStatus::Unknown => "Unknown".into(),
            },
            roles: if node.roles.is_empty() {
                "<none>".into()
            } else {
                node.roles.join(",")
            },
            version: node.kubelet_version.clone(),
            arch: node.arch.clone(),
            problems,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub cluster: String,
    /// The version pinned for every node, and where it came from.
    pub version: Option<String>,
    pub version_source: Option<String>,
    pub dry_run: bool,
    pub hosts: Vec<HostReport>,
    pub nodes: Vec<NodeRow>,
    /// Kubeconfig file merged into, and the context name.
    pub kubeconfig: Option<String>,
    /// Why the fetched kubeconfig was not merged (refused as untrusted, or not writable): the
    /// cluster may be fine, but `up` did not deliver access to it, so the run fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig_error: Option<String>,
    pub log_dir: Option<String>,
    /// Cluster-level notes: a dead first server, unexpected nodes, a replaced stale lock.
    pub messages: Vec<String>,
    /// Wall time of each phase that ran, in order.
    pub phases: Vec<PhaseTime>,
    /// The GitLab phase, when the inventory has `[gitlab]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<super::gitlab::GitLabReport>,
}

/// How long one phase took, start to end, over all its hosts.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    pub phase: String,
    pub seconds: f64,
}

impl RunReport {
    pub fn failed_hosts(&self) -> usize {
        self.hosts.iter().filter(|h| h.is_failure()).count()
    }
}

pub(crate) use crate::engine::last_lines;
