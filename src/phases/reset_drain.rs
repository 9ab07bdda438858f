//! `reset --limit` of hosts leaving a cluster that stays: cordon and drain each one through the
//! first server before anything on it changes, so its pods move to the nodes that stay. A drain
//! that fails or times out leaves the host installed and uncordons it again (it stays a working
//! member; kubectl itself would leave it cordoned, but edgeops changed nothing else on it and
//! does not leave a half-done removal behind). The reason names the blocking pods.

use std::time::Instant;

use crate::phases::drain::{self, DrainError, Drained};
use crate::phases::outcome::record;

use super::Reset;
use super::Scope;

impl Reset {
    /// Drain `host` (an inventory name) if this reset drains: `Ok(true)` drained, `Ok(false)`
    /// nothing to drain (not asked, whole-cluster reset, or the node is not in the cluster);
    /// `Err`: the reason the host must not be uninstalled.
    pub(super) async fn drain_out(&self, host: &str) -> Result<bool, String> {
        let Some(options) = self.options.drain.as_ref() else {
            return Ok(false);
        };
        if self.scope != Scope::Hosts {
            return Ok(false);
        }
        let node = self
            .node_names
            .get(host)
            .cloned()
            .unwrap_or(host.to_owned());
        let first = &self.first;
        let runs_k3s = self
            .first_found
            .as_ref()
            .is_some_and(|s| s.units.iter().any(|u| u == "k3s"));
        let session = self.fleet.session(first).filter(|_| runs_k3s).ok_or_else(|| {
            format!(
                "not reset: cannot drain {node}: the first server {first} is unreachable or runs \
                 no k3s server (pass --skip-drain to remove it without draining)"
            )
        })?;
        self.observer.event(&crate::phases::Progress::Message {
            text: &format!(
                "{host}: {} of node {node} through {first}",
                options.describe()
            ),
        });
        let started = Instant::now();
        let result = drain::drain(session, &node, options, &self.log, host).await;
        record(&self.busy, host, started);
        match result {
            Ok(Drained::Drained) => Ok(true),
            Ok(Drained::NotInCluster) => Ok(false),
            Err(e) => {
                let uncordoned = match drain::uncordon(session, &node, &self.log, host).await {
                    Ok(()) => "uncordoned again".to_owned(),
                    Err(why) => {
                        format!("left cordoned ({why}; `kubectl uncordon {node}` once fixed)")
                    }
                };
                let hint = match &e {
                    DrainError::Blocked { failure, .. } if failure.timed_out => {
                        " (raise --drain-timeout, add capacity, or relax the budget)"
                    }
                    _ => "",
                };
                let reason = format!("not reset: {e}{hint}; k3s left installed, {uncordoned}");
                self.observer.event(&crate::phases::Progress::Message {
                    text: &format!("{host}: {reason}"),
                });
                Err(reason)
            }
        }
    }
}
