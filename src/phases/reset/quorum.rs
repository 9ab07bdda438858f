//! `reset --limit` of servers in an embedded-etcd cluster: quorum checked before anything
//! changes and before each server leaves, and each server's Node deleted (k3s then removes its
//! etcd member) before it is uninstalled. Uninstalling first would leave its member behind,
//! counted and down, and two of three servers gone that way take the quorum with them.

use std::time::Duration;

use crate::k3s::nodes;
use crate::k3s::quorum::Members;
use crate::ssh::ExecRequest;

use super::Reset;
use crate::phases::remote;
use crate::phases::reset_remote as scripts;

/// Bound of one node-list read or Node deletion through the first server (the API of a
/// cluster without quorum hangs: this is how long edgeops lets it).
pub(super) const API_STEP_TIMEOUT: Duration = Duration::from_secs(60);

impl Reset {
    /// The etcd members as the first server's API reports them; `Err`: why it could not say.
    pub(super) async fn etcd_members(&self) -> Result<Members, String> {
        let first = self.first.clone();
        let request = ExecRequest::new(remote::NODES_COMMAND)
            .sudo(true)
            .timeout(API_STEP_TIMEOUT);
        let out = self
            .step(&first, "etcd members (node list)", request)
            .await
            .map_err(|(reason, _)| reason)?;
        let list = nodes::parse_nodes(&out.stdout_lossy()).map_err(|e| e.to_string())?;
        Ok(Members::from_nodes(&list))
    }

    /// Before anything changes: can `servers` (node names, in order) leave one at a time with
    /// the rest keeping quorum? `Err`: the refusal, naming the members and the way out.
    pub(super) async fn check_servers_may_leave(&self, servers: &[String]) -> Result<(), String> {
        let members = self.etcd_members().await.map_err(|reason| {
            format!(
                "cannot read the etcd members through the first server {} ({reason}); if the \
                 cluster lost its quorum, restore it first: `k3s server --cluster-reset` on {} \
                 (see `edgeops status`)",
                self.first, self.first
            )
        })?;
        members.check_removals(servers).map_err(|why| {
            format!(
                "{why}. Nothing was changed: bring the down members back, or remove them first \
                 (`edgeops reset --limit` on them)"
            )
        })
    }

    /// One server leaves etcd: quorum checked again, then its Node deleted (k3s removes the
    /// member); only then may it be uninstalled.
    pub(super) async fn leave_etcd(&self, host: &str, node: &str) -> Result<(), String> {
        let members = self.etcd_members().await?;
        members.check_removals(&[node.to_owned()])?;
        if !members.members.iter().any(|(n, _)| n == node) {
            return Ok(());
        }
        let request = ExecRequest::new(scripts::delete_nodes_script(&[node.to_owned()]))
            .sudo(true)
            .timeout(API_STEP_TIMEOUT);
        let out = self
            .step(&self.first, &format!("remove {host} from etcd"), request)
            .await
            .map_err(|(reason, _)| reason)?;
        let (_, _, failed) = scripts::parse_deleted(&out.stdout_lossy());
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "could not delete Node {node} (its etcd member) through {}",
                self.first
            ))
        }
    }
}
