//! What a run of `up`, `plan` or `status` found and did, per host and for the cluster: plain
//! data, serialisable for `--output json`; the CLI draws the tables. Also what each host's
//! remote work cost (time, commands) and the short reason taken from a command's output.

use serde::Serialize;

use crate::engine::PhaseRecord;
use crate::k3s::nodes::{ConditionStatus, NodeStatus};

use super::decide::Decision;
use crate::host::facts::Facts;

pub use super::host_status::{HostLine, Status};

/// One host's line in the final table: the shared columns (`result`: what `up` did or would
/// do, `installed`, `nothing to do`, ...; `seconds`: time spent in remote steps) and what `up`
/// adds.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    #[serde(flatten)]
    pub line: HostLine,
    /// k3s architecture (`arm64`), or the raw `uname -m` when k3s has none.
    pub arch: Option<String>,
    /// The k3s version on the host after the run.
    pub version: Option<String>,
    pub decision: Option<Decision>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<Facts>,
}

crate::phases::host_status::host_row!(HostReport);

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
    /// The phases in order: how each ended (applied, planned with its lines, nothing to do,
    /// not reached) and how long it took.
    pub phases: Vec<PhaseRecord>,
    /// The GitLab phase, when the inventory has `[gitlab]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<super::gitlab::GitLabReport>,
}

impl RunReport {
    pub fn failed_hosts(&self) -> usize {
        self.hosts.iter().filter(|h| h.is_failure()).count()
    }
}
