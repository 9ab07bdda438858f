//! The join token guard: before `up` writes anything, the inventory's token is compared with
//! the one the running cluster was started with, on the first server, so neither is printed,
//! logged or sent back. k3s binds its datastore to the token: a server restarted with another
//! one exits ("bootstrap data already found and encrypted with different token") and every
//! join with it is refused, so a mismatch stops the run before any change.
//! The scripts (check, rotate, token file) are `crate::k3s::token_scripts`.

use super::*;
use crate::k3s::token_scripts::{
    TokenCheck, rotate_request_script, token_check_script, token_file_script,
};

impl Runner<'_> {
    /// `--rotate-join-token`: k3s's rotation on the first server, then every node's token file:
    /// the first server's, the other servers' one at a time (each restarts), the agents' in one
    /// window, as k3s asks ("restart k3s nodes with new token"). `false`: it failed; the hosts
    /// say why.
    async fn rotate_join_token(&mut self, token: &JoinToken) -> bool {
        let first = self.core.first;
        let observer = self.core.engine.observer().clone();
        observer.event(&Progress::PhaseStart {
            phase: "rotate join token",
            hosts: 1,
        });
        let request = ExecRequest::new(rotate_request_script())
            .sudo(true)
            .stdin(token.file_contents().into_bytes());
        if let Err(failure) = self
            .core
            .engine
            .run(first, "rotate join token", &request, Output::Logged)
            .await
        {
            observer.event(&Progress::PhaseEnd {
                phase: "rotate join token",
            });
            self.stop_all(Failure {
                reason: format!("join token rotation failed: {}", failure.reason),
                ..failure
            });
            return false;
        }
        // The first server's own file and restart, before anyone else (the others join it).
        let mut results = vec![(first, self.new_join_token(first, token).await)];
        observer.event(&Progress::PhaseEnd {
            phase: "rotate join token",
        });
        if results[0].1.is_ok() {
            // Servers restart one at a time, so the others keep etcd quorum while one is away
            // (k3s: "restart k3s nodes with new token", servers first). Agents only have their
            // file rewritten (no restart): their order does not matter, so one window.
            let (servers, agents) = self.token_rotation_hosts();
            let this = &*self;
            results.extend(
                this.core
                    .engine
                    .each_within("new join token (servers)", &servers, 1, |id| {
                        this.new_join_token(id, token)
                    })
                    .await,
            );
            results.extend(
                this.core
                    .engine
                    .each("new join token (agents)", &agents, |id| {
                        this.new_join_token(id, token)
                    })
                    .await,
            );
        }
        let mut failed = false;
        for (id, result) in results {
            if let Err(failure) = result {
                self.hosts[id].fail(Failure {
                    reason: format!(
                        "join token rotated, but updating this node failed: {}",
                        failure.reason
                    ),
                    ..failure
                });
                failed = true;
            }
        }
        self.message(format!(
            "cluster {}: join token rotated with k3s token rotate; every node's token file updated{}",
            self.inventory.cluster.name,
            if failed { " except the failed hosts" } else { "" }
        ));
        self.hosts[first].alive() || {
            self.skip_rest(&format!(
                "the first server {} failed after the token rotation",
                self.first_name()
            ));
            false
        }
    }

    /// After the rotation on the first server: the other live hosts where k3s is installed,
    /// servers (restarted one at a time) and agents (file only), in inventory order.
    pub(super) fn token_rotation_hosts(&self) -> (Vec<HostId>, Vec<HostId>) {
        let installed = |role: Role| {
            self.alive_where(|id, s| {
                id != self.core.first
                    && s.facts.as_ref().and_then(|f| f.installed_role()) == Some(role)
            })
        };
        (installed(Role::Server), installed(Role::Agent))
    }

    /// Write the new token into `id`'s token file; a server restarts with it (watched up to
    /// the join limit), bounded by the host's install limit.
    async fn new_join_token(&self, id: HostId, token: &JoinToken) -> Result<(), Failure> {
        let state = &self.hosts[id];
        let server = state.facts.as_ref().and_then(|f| f.installed_role()) == Some(Role::Server);
        let unit = if server { "k3s" } else { "k3s-agent" };
        let script = token_file_script(server.then_some(unit));
        let script = if server {
            join_watch::watched(&script, unit, self.inventory.cluster.join_timeout)
        } else {
            script
        };
        let request = ExecRequest::new(script)
            .sudo(true)
            .stdin(token.file_contents().into_bytes())
            .timeout(join_watch::install_timeout(self.inventory, &state.host));
        self.core
            .engine
            .run(id, "new join token", &request, Output::Logged)
            .await
            .map(drop)
    }

    /// `false`: the inventory's token is not the cluster's; every host is stopped with why.
    /// Runs only when the inventory names a token, the first server runs k3s as a server and
    /// some host would be (re)installed (which writes the token): one round trip then, none on a
    /// converged re-run.
    pub(super) async fn join_token_matches(&mut self) -> bool {
        let Some(token) = self.options.token.clone() else {
            return true;
        };
        let first = self.core.first;
        let first_name = self.first_name();
        let running = self.hosts[first].runs_server();
        let writers: Vec<String> = self
            .alive_where(|_, s| {
                matches!(
                    s.action(),
                    Action::Install | Action::Reconfigure | Action::Upgrade
                )
            })
            .into_iter()
            .map(|id| self.name(id).to_owned())
            .collect();
        let rotate = self.options.rotate_join_token;
        if !running || (writers.is_empty() && !rotate) || !self.hosts[first].alive() {
            return true;
        }
        let request = ExecRequest::new(token_check_script())
            .sudo(true)
            .stdin(token.file_contents().into_bytes());
        let answer = match self
            .core
            .engine
            .run(first, "join token check", &request, Output::Logged)
            .await
        {
            Ok(out) => out.stdout_lossy(),
            Err(failure) => {
                self.stop_all(Failure {
                    reason: format!("the join token check failed ({})", failure.reason),
                    ..failure
                });
                return false;
            }
        };
        let verdict = TokenCheck::parse(&answer);
        if verdict == TokenCheck::SecretDiffers && rotate {
            return self.rotate_join_token(&token).await;
        }
        let what = match (verdict, verdict.mismatch()) {
            (_, Some(what)) => what,
            (TokenCheck::Matches, _) => {
                if rotate {
                    self.message(format!(
                        "cluster {}: --rotate-join-token: the cluster already runs with the inventory's token",
                        self.inventory.cluster.name
                    ));
                }
                return true;
            }
            _ => {
                self.stop_all(Failure::new(
                    FailureKind::Exited,
                    "the join token check gave no answer",
                ));
                return false;
            }
        };
        let source = match &self.inventory.cluster.token {
            crate::inventory::SecretSource::Env(var) => format!("token_env {var}"),
            crate::inventory::SecretSource::File(path) => format!("token_file {}", path.display()),
            _ => "the inventory".to_owned(),
        };
        let reason = format!(
            "cluster {cluster}: the inventory's join token ({source}) does not match the running \
             cluster's on {first_name}: {what}. k3s would refuse it (a server restarted with it exits: \
             \"bootstrap data already found and encrypted with different token\"; joins with it are \
             refused), so nothing was changed on {hosts}. Fix: give the cluster's token (the one in \
             /var/lib/rancher/k3s/server/token on {first_name}) in {source}, or change the cluster's \
             token to this one with `edgeops up --rotate-join-token`",
            cluster = self.inventory.cluster.name,
            hosts = writers.join(", "),
        );
        self.message(reason.clone());
        self.stop_all(Failure::refused(reason));
        false
    }

    /// The first server fails with `failure`; every other host still waiting is skipped.
    fn stop_all(&mut self, failure: Failure) {
        self.hosts[self.core.first].fail(failure);
        self.skip_rest(&format!(
            "the join token check on {} stopped the run: nothing was changed",
            self.first_name()
        ));
    }
}
