//! Node state as the cluster reports it (`kubectl get nodes -o json`), and the check of expected
//! nodes (names, version, labels, taints) against it, in plain words per node.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use crate::inventory::Inventory;

use super::install::{InstallError, node_labels_and_taints};
use super::version::K3sVersion;

#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    #[error("the node list is not Kubernetes JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("expected a List or NodeList of Nodes, got kind {0:?}")]
    WrongKind(String),
}

/// The `status` of a Kubernetes condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// One node, as much of it as edgeops looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub name: String,
    /// The `Ready` condition; `Unknown` also when the node reports no such condition.
    pub ready: ConditionStatus,
    /// `reason` and `message` of the Ready condition (e.g. `KubeletNotReady`, "container runtime
    /// network not ready ...").
    pub ready_reason: Option<String>,
    pub ready_message: Option<String>,
    /// `status.nodeInfo.kubeletVersion`: the k3s version on k3s nodes.
    pub kubelet_version: String,
    /// `status.nodeInfo.architecture` (`arm64`, `amd64`, `arm`).
    pub arch: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// From `node-role.kubernetes.io/<role>` labels (`control-plane`, `etcd`, `master`), sorted.
    pub roles: Vec<String>,
    /// Cordoned.
    pub unschedulable: bool,
}

/// A node taint, `key[=value]:Effect`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    pub effect: String,
}

const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a taint (expected key=value:Effect or key:Effect, Effect one of NoSchedule, PreferNoSchedule, NoExecute)"
)]
pub struct TaintError(pub String);

impl FromStr for Taint {
    type Err = TaintError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = || TaintError(text.to_owned());
        let (key_value, effect) = text.rsplit_once(':').ok_or_else(fail)?;
        if !EFFECTS.contains(&effect) {
            return Err(fail());
        }
        let (key, value) = match key_value.split_once('=') {
            Some((key, value)) => (key, Some(value.to_owned())),
            None => (key_value, None),
        };
        if key.is_empty() {
            return Err(fail());
        }
        Ok(Taint {
            key: key.to_owned(),
            // `key=:Effect` (empty value) is the same taint as `key:Effect`.
            value: value.filter(|value| !value.is_empty()),
            effect: effect.to_owned(),
        })
    }
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={}:{}", self.key, value, self.effect),
            None => write!(f, "{}:{}", self.key, self.effect),
        }
    }
}

// The JSON shapes, only the fields we read.
#[derive(Deserialize)]
struct NodeList {
    kind: String,
    #[serde(default)]
    items: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    metadata: Metadata,
    #[serde(default)]
    spec: Spec,
    #[serde(default)]
    status: Status,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(default)]
    taints: Vec<Taint>,
    #[serde(default)]
    unschedulable: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    conditions: Vec<Condition>,
    #[serde(default)]
    node_info: NodeInfo,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct NodeInfo {
    #[serde(default)]
    kubelet_version: String,
    #[serde(default)]
    architecture: String,
}

const ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";

/// Parse the output of `kubectl get nodes -o json` (a `List`) or the API's `NodeList`.
pub fn parse_nodes(json: &str) -> Result<Vec<NodeStatus>, NodesError> {
    let list: NodeList = serde_json::from_str(json)?;
    if list.kind != "List" && list.kind != "NodeList" {
        return Err(NodesError::WrongKind(list.kind));
    }
    Ok(list.items.into_iter().map(node_status).collect())
}

fn node_status(node: Node) -> NodeStatus {
    let ready = node
        .status
        .conditions
        .into_iter()
        .find(|condition| condition.kind == "Ready");
    let (ready, ready_reason, ready_message) = match ready {
        Some(condition) => (
            match condition.status.as_str() {
                "True" => ConditionStatus::True,
                "False" => ConditionStatus::False,
                _ => ConditionStatus::Unknown,
            },
            condition.reason,
            condition.message,
        ),
        None => (
            ConditionStatus::Unknown,
            None,
            Some("the node reports no Ready condition yet".to_owned()),
        ),
    };
    let mut roles: Vec<String> = node
        .metadata
        .labels
        .keys()
        .filter_map(|key| key.strip_prefix(ROLE_LABEL_PREFIX))
        .filter(|role| !role.is_empty())
        .map(str::to_owned)
        .collect();
    roles.sort();
    NodeStatus {
        name: node.metadata.name,
        ready,
        ready_reason,
        ready_message,
        kubelet_version: node.status.node_info.kubelet_version,
        arch: node.status.node_info.architecture,
        labels: node.metadata.labels,
        taints: node.spec.taints,
        roles,
        unschedulable: node.spec.unschedulable,
    }
}

/// Whether node `node` of `list` is Ready and reports `want`: `Err` says what it shows instead.
pub fn ready_at(list: &[NodeStatus], node: &str, want: &str) -> Result<(), String> {
    match list.iter().find(|n| n.name == node) {
        None => Err("not registered in the cluster".to_owned()),
        Some(n) if n.kubelet_version != want => Err(format!("still reports {}", n.kubelet_version)),
        Some(n) if n.ready != ConditionStatus::True => Err(format!(
            "at {want} but not Ready ({})",
            n.ready_reason.as_deref().unwrap_or("no reason given")
        )),
        Some(_) => Ok(()),
    }
}

/// What the inventory says a node should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedNode {
    pub name: String,
    /// The pinned version; `None` skips the version check.
    pub version: Option<K3sVersion>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("{host}: {source}")]
    Taint {
        host: String,
        #[source]
        source: TaintError,
    },
    #[error("{host}: node label {label:?} is not key=value")]
    Label { host: String, label: String },
}

/// Every host of the inventory as the node it should become: its node name, the pinned
/// version, and its labels and taints (including those given as `--node-label`/`--node-taint`
/// arguments).
pub fn expected_nodes(
    inventory: &Inventory,
    version: Option<&K3sVersion>,
) -> Result<Vec<ExpectedNode>, ExpectError> {
    inventory
        .hosts
        .iter()
        .map(|host| {
            let (labels, taints) = node_labels_and_taints(inventory, host)?;
            let labels = labels
                .into_iter()
                .map(|label| match label.split_once('=') {
                    Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
                    None => Err(ExpectError::Label {
                        host: host.name.clone(),
                        label,
                    }),
                })
                .collect::<Result<_, _>>()?;
            let taints = taints
                .iter()
                .map(|taint| {
                    taint.parse().map_err(|source| ExpectError::Taint {
                        host: host.name.clone(),
                        source,
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(ExpectedNode {
                name: host.node_name.clone(),
                version: version.cloned(),
                labels,
                taints,
            })
        })
        .collect()
}

/// The verdict for one expected node: empty `problems` means it is as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub name: String,
    pub problems: Vec<String>,
}

impl NodeReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCheck {
    /// One report per expected node, in the order given.
    pub reports: Vec<NodeReport>,
    /// Nodes in the cluster that the inventory does not list (left over, or joined by hand).
    pub unexpected: Vec<String>,
}

impl NodeCheck {
    /// Every expected node is registered, Ready and as configured. Unexpected nodes do not make
    /// the cluster wrong; they are reported for the user to decide.
    pub fn all_ok(&self) -> bool {
        self.reports.iter().all(NodeReport::is_ok)
    }
}

/// Compare expected nodes with what the cluster reports. Extra labels and taints on a node are
/// fine (Kubernetes and k3s add their own); missing or different ones are problems.
pub fn check_nodes(expected: &[ExpectedNode], observed: &[NodeStatus]) -> NodeCheck {
    let reports = expected
        .iter()
        .map(|want| NodeReport {
            name: want.name.clone(),
            problems: match observed.iter().find(|node| node.name == want.name) {
                None => vec!["not registered in the cluster".to_owned()],
                Some(node) => node_problems(want, node),
            },
        })
        .collect();
    let unexpected = observed
        .iter()
        .filter(|node| !expected.iter().any(|want| want.name == node.name))
        .map(|node| node.name.clone())
        .collect();
    NodeCheck {
        reports,
        unexpected,
    }
}

/// The nodes of `unexpected` (from a check against a subset of the inventory, e.g. the hosts
/// still alive in a run) that no host of the inventory names: an unreachable or failed host's
/// node is the inventory's, not a stranger.
pub fn not_in_inventory<'a>(inventory: &Inventory, unexpected: &'a [String]) -> Vec<&'a str> {
    unexpected
        .iter()
        .filter(|node| !inventory.hosts.iter().any(|h| &h.node_name == *node))
        .map(String::as_str)
        .collect()
}

fn node_problems(want: &ExpectedNode, node: &NodeStatus) -> Vec<String> {
    let mut problems = Vec::new();
    if node.ready != ConditionStatus::True {
        let state = match node.ready {
            ConditionStatus::False => "not Ready",
            _ => "Ready state unknown",
        };
        let detail: Vec<&str> = [node.ready_reason.as_deref(), node.ready_message.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        problems.push(if detail.is_empty() {
            state.to_owned()
        } else {
            format!("{state} ({})", detail.join(": "))
        });
    }
    if let Some(version) = &want.version {
        match node.kubelet_version.parse::<K3sVersion>() {
            Ok(running) if running == *version => {}
            _ => problems.push(format!(
                "runs {}, expected {version}",
                if node.kubelet_version.is_empty() {
                    "an unreported version"
                } else {
                    &node.kubelet_version
                }
            )),
        }
    }
    for (key, value) in &want.labels {
        match node.labels.get(key) {
            None => problems.push(format!("label {key}={value} is missing")),
            Some(actual) if actual != value => {
                problems.push(format!("label {key} is {actual:?}, expected {value:?}"))
            }
            Some(_) => {}
        }
    }
    for taint in &want.taints {
        if !node.taints.contains(taint) {
            problems.push(format!("taint {taint} is missing"));
        }
    }
    if node.unschedulable {
        problems.push("is cordoned (unschedulable)".to_owned());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a real `k3s kubectl get nodes -o json` of a 1-server 2-agent Pi cluster.
    const NODES_JSON: &str = r#"{
      "apiVersion": "v1",
      "kind": "List",
      "metadata": {"resourceVersion": ""},
      "items": [
        {
          "apiVersion": "v1", "kind": "Node",
          "metadata": {
            "name": "pi-01",
            "labels": {
              "beta.kubernetes.io/arch": "arm64", "kubernetes.io/arch": "arm64",
              "kubernetes.io/hostname": "pi-01", "kubernetes.io/os": "linux",
              "node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true",
              "node.kubernetes.io/instance-type": "k3s"
            },
            "annotations": {"k3s.io/node-args": "[\"server\"]"}
          },
          "spec": {"podCIDR": "10.42.0.0/24", "providerID": "k3s://pi-01"},
          "status": {
            "conditions": [
              {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
              {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
            ],
            "nodeInfo": {"architecture": "arm64", "kubeletVersion": "v1.31.4+k3s1",
                         "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.6.51+rpt-rpi-2712",
                         "containerRuntimeVersion": "containerd://1.7.23-k3s2"}
          }
        },
        {
          "apiVersion": "v1", "kind": "Node",
          "metadata": {
            "name": "pi-02",
            "labels": {"kubernetes.io/arch": "arm64", "edgeops.dev/board": "rpi4"}
          },
          "spec": {
            "taints": [
              {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule", "timeAdded": "2026-11-25T10:00:00Z"},
              {"key": "dedicated", "value": "camera", "effect": "NoSchedule"}
            ],
            "unschedulable": true
          },
          "status": {
            "conditions": [
              {"type": "Ready", "status": "False", "reason": "KubeletNotReady",
               "message": "container runtime network not ready: NetworkReady=false"}
            ],
            "nodeInfo": {"architecture": "arm64", "kubeletVersion": "v1.30.8+k3s1"}
          }
        },
        {
          "apiVersion": "v1", "kind": "Node",
          "metadata": {"name": "pi-03", "labels": {"kubernetes.io/arch": "arm"}},
          "spec": {},
          "status": {
            "conditions": [
              {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
               "message": "Kubelet stopped posting node status."}
            ],
            "nodeInfo": {"architecture": "arm", "kubeletVersion": "v1.31.4+k3s1"}
          }
        },
        {
          "apiVersion": "v1", "kind": "Node",
          "metadata": {"name": "old-pi"},
          "status": {}
        }
      ]
    }"#;

    fn expected(name: &str) -> ExpectedNode {
        ExpectedNode {
            name: name.into(),
            version: Some("v1.31.4+k3s1".parse().unwrap()),
            labels: BTreeMap::new(),
            taints: vec![],
        }
    }

    #[test]
    fn parses_ready_state_version_arch_roles_and_taints() {
        let nodes = parse_nodes(NODES_JSON).unwrap();
        assert_eq!(nodes.len(), 4);
        let server = &nodes[0];
        assert_eq!(server.ready, ConditionStatus::True);
        assert_eq!(server.ready_reason.as_deref(), Some("KubeletReady"));
        assert_eq!(server.kubelet_version, "v1.31.4+k3s1");
        assert_eq!(server.arch, "arm64");
        assert_eq!(server.roles, ["control-plane", "master"]);
        assert!(!server.unschedulable);

        let agent = &nodes[1];
        assert_eq!(agent.ready, ConditionStatus::False);
        assert!(agent.unschedulable);
        assert_eq!(
            agent
                .taints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "node.kubernetes.io/not-ready:NoSchedule",
                "dedicated=camera:NoSchedule"
            ]
        );
        assert!(agent.roles.is_empty());
        assert_eq!(nodes[2].ready, ConditionStatus::Unknown);
        assert_eq!(nodes[3].ready, ConditionStatus::Unknown);
        assert_eq!(nodes[3].kubelet_version, "");
    }

    #[test]
    fn reports_each_mismatch_in_plain_words() {
        let nodes = parse_nodes(NODES_JSON).unwrap();
        let mut pi02 = expected("pi-02");
        pi02.labels
            .insert("edgeops.dev/board".into(), "rpi5".into());
        pi02.labels
            .insert("edgeops.dev/camera".into(), "true".into());
        pi02.taints = vec!["dedicated=camera:NoSchedule".parse().unwrap()];
        let mut pi03 = expected("pi-03");
        pi03.taints = vec!["dedicated:NoExecute".parse().unwrap()];
        let check = check_nodes(&[expected("pi-01"), pi02, pi03, expected("pi-04")], &nodes);

        assert!(!check.all_ok());
        assert!(check.reports[0].is_ok(), "{:?}", check.reports[0]);
        assert_eq!(
            check.reports[1].problems,
            [
                "not Ready (KubeletNotReady: container runtime network not ready: NetworkReady=false)",
                "runs v1.30.8+k3s1, expected v1.31.4+k3s1",
                "label edgeops.dev/board is \"rpi4\", expected \"rpi5\"",
                "label edgeops.dev/camera=true is missing",
                "is cordoned (unschedulable)",
            ]
        );
        assert_eq!(
            check.reports[2].problems,
            [
                "Ready state unknown (NodeStatusUnknown: Kubelet stopped posting node status.)",
                "taint dedicated:NoExecute is missing",
            ]
        );
        assert_eq!(check.reports[3].problems, ["not registered in the cluster"]);
        assert_eq!(check.unexpected, ["old-pi"]);
    }

    #[test]
    fn a_node_of_an_inventory_host_left_out_of_the_check_is_not_a_stranger() {
        let inventory = crate::k3s::test_inventory::ha_inventory();
        let version: K3sVersion = "v1.31.4+k3s1".parse().unwrap();
        let all = expected_nodes(&inventory, Some(&version)).unwrap();
        // wrk-1 is unreachable this run: only the others are checked, its node is still there.
        let checked: Vec<ExpectedNode> = all.into_iter().filter(|n| n.name != "wrk-1").collect();
        let observed: Vec<NodeStatus> = ["srv-1", "wrk-1", "old-pi"]
            .iter()
            .map(|name| NodeStatus {
                name: (*name).to_owned(),
                ..parse_nodes(NODES_JSON).unwrap().remove(0)
            })
            .collect();
        let check = check_nodes(&checked, &observed);
        assert_eq!(check.unexpected, ["wrk-1", "old-pi"]);
        assert_eq!(not_in_inventory(&inventory, &check.unexpected), ["old-pi"]);
    }

    #[test]
    fn all_ok_when_every_expected_node_matches() {
        let nodes = parse_nodes(NODES_JSON).unwrap();
        let mut any_version = expected("pi-01");
        any_version.version = None;
        let check = check_nodes(&[any_version], &nodes[..1]);
        assert!(check.all_ok());
        assert!(check.unexpected.is_empty());
    }

    #[test]
    fn expected_nodes_come_from_the_inventory_including_flag_labels_and_taints() {
        let inventory = crate::k3s::test_inventory::ha_inventory();
        let version: K3sVersion = "v1.31.4+k3s1".parse().unwrap();
        let nodes = expected_nodes(&inventory, Some(&version)).unwrap();
        assert_eq!(
            nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["srv-1", "srv-2", "srv-3", "wrk-1", "wrk-2.edge"]
        );
        assert_eq!(
            nodes[0].taints,
            ["CriticalAddonsOnly=true:NoExecute"
                .parse::<Taint>()
                .unwrap()]
        );
        assert!(nodes[3].taints.is_empty());
        assert_eq!(
            nodes[4].taints[0].to_string(),
            "dedicated=camera:NoSchedule"
        );
        assert_eq!(nodes[4].labels["edgeops.dev/camera"], "true");
        assert_eq!(nodes[4].version, Some(version));

        let mut broken = inventory.clone();
        broken.hosts[3].taints = vec!["oops".into()];
        let err = expected_nodes(&broken, None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("wrk-1: \"oops\" is not a taint"),
            "{err}"
        );
    }

    #[test]
    fn taints_parse_in_both_inventory_forms() {
        let taint: Taint = "dedicated=camera:NoSchedule".parse().unwrap();
        assert_eq!(taint.value.as_deref(), Some("camera"));
        let bare: Taint = "CriticalAddonsOnly=:NoExecute".parse().unwrap();
        assert_eq!(bare.to_string(), "CriticalAddonsOnly:NoExecute");
        for bad in ["dedicated=camera", "x:Sometimes", ":NoSchedule"] {
            assert!(bad.parse::<Taint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn other_kinds_and_garbage_are_errors() {
        let err = parse_nodes(r#"{"kind":"PodList","items":[]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected a List or NodeList of Nodes, got kind \"PodList\""
        );
        assert!(parse_nodes("No resources found").is_err());
    }
}
