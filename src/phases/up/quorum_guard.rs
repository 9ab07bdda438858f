//! `up` in an embedded-etcd cluster: a server that is reconfigured, upgraded or restarted is
//! away from etcd while it restarts; if the other members could not keep quorum meanwhile, the
//! run is refused before anything changes (one node-list read, only on such runs).

use super::*;

impl Runner<'_> {
    /// `false`: some server's restart would cost the quorum; every host is stopped with why.
    pub(super) async fn quorum_allows_restarts(&mut self) -> bool {
        if !self.inventory.cluster.ha {
            return true;
        }
        let restarting: Vec<(HostId, String)> = self
            .alive_where(|_, s| {
                s.host.role == Role::Server
                    && s.runs_server()
                    && matches!(
                        s.action(),
                        Action::Reconfigure | Action::Upgrade | Action::Restart
                    )
            })
            .into_iter()
            .map(|id| (id, self.hosts[id].host.node_name.clone()))
            .collect();
        if restarting.is_empty() {
            return true;
        }
        let first = self.core.first;
        let members = match steps::read_nodes(&self.core, "etcd members (node list)").await {
            Ok(Ok(list)) => crate::k3s::quorum::Members::from_nodes(&list),
            Ok(Err(e)) => {
                self.refuse_for_quorum(first, &format!("cannot read the etcd members: {e}"));
                return false;
            }
            Err(reason) => {
                self.refuse_for_quorum(
                    first,
                    &format!(
                        "cannot read the etcd members ({reason}); if the cluster lost its quorum, \
                         `edgeops status` names the recovery"
                    ),
                );
                return false;
            }
        };
        for (id, node) in restarting {
            let host = self.name(id).to_owned();
            if let Err(why) = members.check_restart(&node) {
                self.refuse_for_quorum(
                    id,
                    &format!(
                        "restarting server {host} {why}; nothing was changed: bring the down \
                         servers back, or take them out with `edgeops reset --limit`"
                    ),
                );
                return false;
            }
        }
        true
    }

    fn refuse_for_quorum(&mut self, id: HostId, reason: &str) {
        let text = format!("cluster {}: {reason}", self.inventory.cluster.name);
        self.message(text.clone());
        self.hosts[id].fail(Failure::refused(text));
        self.skip_rest("refused: the embedded etcd would lose its quorum (see the note)");
    }
}
