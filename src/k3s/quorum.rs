//! Embedded etcd quorum from the node list: every server Node labelled
//! `node-role.kubernetes.io/etcd` is a member; a member is healthy unless its Ready condition is
//! `Unknown` (its kubelet stopped posting, the node is gone); quorum is a majority of members.
//! Deleting a server's Node makes k3s remove its etcd member, so servers leave one at a time:
//! Node deleted (member removed), then uninstalled, quorum checked before each step.

use super::nodes::{ConditionStatus, NodeStatus};

/// The etcd members the node list shows, and which of them are healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// `(node name, healthy)` in list order.
    pub members: Vec<(String, bool)>,
}

impl Members {
    pub fn from_nodes(nodes: &[NodeStatus]) -> Members {
        Members {
            members: nodes
                .iter()
                .filter(|n| n.roles.iter().any(|r| r == "etcd"))
                .map(|n| (n.name.clone(), n.ready != ConditionStatus::Unknown))
                .collect(),
        }
    }

    pub fn healthy(&self) -> usize {
        self.members.iter().filter(|(_, ok)| *ok).count()
    }

    pub fn has_quorum(&self) -> bool {
        self.members.is_empty() || self.healthy() > self.members.len() / 2
    }

    /// `lab-01, lab-03 (down)`.
    pub fn describe(&self) -> String {
        self.members
            .iter()
            .map(|(n, ok)| {
                if *ok {
                    n.clone()
                } else {
                    format!("{n} (down)")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Remove `nodes` one at a time, in order: `Err` names the first step that would leave the
    /// remaining members without quorum (before anything changes).
    pub fn check_removals(&self, nodes: &[String]) -> Result<(), String> {
        let mut left = self.clone();
        for node in nodes {
            if !left.members.iter().any(|(n, _)| n == node) {
                continue;
            }
            left.members.retain(|(n, _)| n != node);
            if !left.has_quorum() {
                return Err(format!(
                    "removing {node} would leave the embedded etcd without quorum: {} of the {} \
                     members left would be healthy ({}), a majority is needed",
                    left.healthy(),
                    left.members.len(),
                    left.describe()
                ));
            }
        }
        Ok(())
    }

    /// Whether `node` may restart (away from etcd meanwhile): `Err` says what it `would leave
    /// ...` (the reason of [`Members::check_removals`] without the node's name).
    pub fn check_restart(&self, node: &str) -> Result<(), String> {
        self.check_removals(&[node.to_owned()]).map_err(|why| {
            why.strip_prefix(&format!("removing {node} "))
                .unwrap_or(&why)
                .to_owned()
        })
    }
}

/// The diagnosis of an embedded etcd that lost its quorum, with the recovery k3s documents
/// (docs.k3s.io, "Cluster Reset"): reset the membership on one surviving server, `first`.
pub fn lost_quorum_note(cluster: &str, first: &str, members: &str) -> String {
    format!(
        "cluster {cluster}: the embedded etcd has lost its quorum (members: {members}); the API cannot \
         answer until it is restored. Recover on {first}: `systemctl stop k3s` on every server, \
         `k3s server --cluster-reset` on {first} (it becomes the only member), `systemctl start \
         k3s` there; then take the other servers out (`edgeops reset --limit NAME`) and let \
         `edgeops up` join them again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, bool)]) -> Members {
        Members {
            members: list.iter().map(|(n, ok)| (n.to_string(), *ok)).collect(),
        }
    }

    #[test]
    fn quorum_is_a_majority_of_members() {
        assert!(members(&[("a", true), ("b", true), ("c", false)]).has_quorum());
        assert!(!members(&[("a", true), ("b", false), ("c", false)]).has_quorum());
        assert!(!members(&[("a", true), ("b", false)]).has_quorum());
    }

    #[test]
    fn healthy_servers_leave_one_at_a_time_but_not_next_to_a_dead_member() {
        let all = members(&[("a", true), ("b", true), ("c", true)]);
        assert!(all.check_removals(&["b".into(), "c".into()]).is_ok());
        let one_down = members(&[("a", true), ("b", true), ("c", false)]);
        let err = one_down.check_removals(&["b".into()]).unwrap_err();
        assert!(
            err.contains("removing b") && err.contains("c (down)"),
            "{err}"
        );
        // Removing the dead member first is fine.
        assert!(one_down.check_removals(&["c".into()]).is_ok());
    }
}
