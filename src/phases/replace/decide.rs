//! What a replacement may do, decided from the first server's node list before anything
//! changes (pure): the old node must not be Ready (a live board is removed with `reset
//! --limit`, which drains it), it must not be the first server, and for a server the embedded
//! etcd must keep its quorum without the member.

use crate::k3s::nodes::{ConditionStatus, NodeStatus};
use crate::k3s::quorum::Members;

/// What the old node is, seen from the first server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldNode {
    /// Not in the cluster (already deleted, or never joined): only the new board is brought in.
    Absent,
    /// In the cluster and not Ready: its Node (and etcd member, for a server) is deleted.
    Dead {
        ready: ConditionStatus,
        /// An embedded-etcd member (a server of an HA cluster).
        member: bool,
        /// `healthy/members` after its removal, for the plan.
        quorum_after: Option<(usize, usize)>,
    },
}

/// Why a replacement is refused before anything changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceRefusal {
    #[error(
        "node {0} is Ready: it is not a dead board; take a live board out with `edgeops reset \
         --limit {0}` (which drains it first), then bring the new one in with `up --limit` \
         (nothing was changed)"
    )]
    StillReady(String),
    #[error(
        "{old} is the first server: edgeops reaches the cluster through it; replacing it is a \
         restore of the cluster, not a node replacement (nothing was changed)"
    )]
    FirstServer { old: String },
    #[error("{0} (nothing was changed)")]
    Quorum(String),
}

/// Decide from the node list (pure).
pub fn decide(nodes: &[NodeStatus], old: &str, first: &str) -> Result<OldNode, ReplaceRefusal> {
    if old == first {
        return Err(ReplaceRefusal::FirstServer {
            old: old.to_owned(),
        });
    }
    let Some(node) = nodes.iter().find(|n| n.name == old) else {
        return Ok(OldNode::Absent);
    };
    if node.ready == ConditionStatus::True {
        return Err(ReplaceRefusal::StillReady(old.to_owned()));
    }
    let members = Members::from_nodes(nodes);
    let member = members.members.iter().any(|(n, _)| n == old);
    let quorum_after = if member {
        members
            .check_removals(&[old.to_owned()])
            .map_err(ReplaceRefusal::Quorum)?;
        let left: Vec<&(String, bool)> = members.members.iter().filter(|(n, _)| n != old).collect();
        Some((left.iter().filter(|(_, up)| *up).count(), left.len()))
    } else {
        None
    };
    Ok(OldNode::Dead {
        ready: node.ready,
        member,
        quorum_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k3s::nodes;

    fn node(name: &str, ready: ConditionStatus, etcd: bool) -> NodeStatus {
        let roles = if etcd {
            vec!["control-plane".to_owned(), "etcd".to_owned()]
        } else {
            vec![]
        };
        let json = serde_json::json!({"kind": "List", "items": [{
            "metadata": {"name": name, "labels": roles.iter().map(|r| (format!("node-role.kubernetes.io/{r}"), "true")).collect::<std::collections::BTreeMap<_, _>>()},
            "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": match ready {
                ConditionStatus::True => "True", ConditionStatus::False => "False", ConditionStatus::Unknown => "Unknown"}}],
                "nodeInfo": {"kubeletVersion": "v1.31.4+k3s1", "architecture": "arm64"}}
        }]});
        nodes::parse_nodes(&json.to_string()).unwrap().remove(0)
    }

    #[test]
    fn a_ready_node_or_the_first_server_is_refused() {
        let nodes = [
            node("s1", ConditionStatus::True, false),
            node("a1", ConditionStatus::True, false),
        ];
        assert_eq!(
            decide(&nodes, "a1", "s1"),
            Err(ReplaceRefusal::StillReady("a1".into()))
        );
        assert!(matches!(
            decide(&nodes, "s1", "s1"),
            Err(ReplaceRefusal::FirstServer { .. })
        ));
        assert_eq!(decide(&nodes, "gone", "s1"), Ok(OldNode::Absent));
    }

    #[test]
    fn a_dead_agent_goes_and_a_dead_server_only_with_quorum() {
        let nodes = [
            node("s1", ConditionStatus::True, true),
            node("s2", ConditionStatus::Unknown, true),
            node("s3", ConditionStatus::True, true),
            node("a1", ConditionStatus::Unknown, false),
        ];
        assert_eq!(
            decide(&nodes, "a1", "s1"),
            Ok(OldNode::Dead {
                ready: ConditionStatus::Unknown,
                member: false,
                quorum_after: None
            })
        );
        assert_eq!(
            decide(&nodes, "s2", "s1"),
            Ok(OldNode::Dead {
                ready: ConditionStatus::Unknown,
                member: true,
                quorum_after: Some((2, 2))
            })
        );
        // Two of three members down: removing one leaves one healthy of two, no quorum.
        let nodes = [
            node("s1", ConditionStatus::True, true),
            node("s2", ConditionStatus::Unknown, true),
            node("s3", ConditionStatus::Unknown, true),
        ];
        assert!(matches!(
            decide(&nodes, "s2", "s1"),
            Err(ReplaceRefusal::Quorum(_))
        ));
    }
}
