//! `up`'s installs: the first server (its install and the API read in one exec), the join token
//! and kubeconfig read from its API, the other servers one at a time, the agents in one window,
//! and the kubeconfig merged on the workstation.

use super::*;

/// What the API read runs, and whether it carries the lock's release.
pub(super) struct ApiPlan {
    pub(super) script: String,
    pub(super) release: bool,
}

impl Runner<'_> {
    /// The request that installs / reconfigures / restarts / upgrades `id` as decided, bounded
    /// by `join_watch::install_timeout` (the host's `command_timeout` + `join_timeout` + grace); its
    /// step word. `None`: nothing to do.
    pub(super) fn install_request(
        &self,
        id: HostId,
        token: Option<&JoinToken>,
    ) -> Option<(&'static str, ExecRequest)> {
        let state = &self.hosts[id];
        let spec = state.spec.as_ref()?;
        let action = state.action();
        let (title, request) = match action {
            Action::Nothing => return None,
            Action::Restart => (
                "restart",
                ExecRequest::new(join_watch::watched_install(
                    self.inventory,
                    spec,
                    &remote::restart_script(remote::unit_name(spec)),
                )),
            ),
            Action::Install | Action::Reconfigure | Action::Upgrade => {
                // Upgrade and reconfigure end with the service restarted, also when the
                // installer found the binary already in place (a failed earlier upgrade).
                let script = match action {
                    Action::Install => remote::install_bundle(spec, false),
                    _ => remote::upgrade_script(spec),
                };
                (
                    action.step_word(),
                    ExecRequest::new(join_watch::watched_install(self.inventory, spec, &script))
                        .stdin(remote::install_stdin(token, spec)),
                )
            }
        };
        Some((
            title,
            request
                .sudo(true)
                .timeout(join_watch::install_timeout(self.inventory, &state.host)),
        ))
    }

    /// Install / reconfigure / restart one host as decided.
    pub(super) async fn apply(&self, id: HostId, token: Option<&JoinToken>) -> Result<(), Failure> {
        let Some((title, request)) = self.install_request(id, token) else {
            return Ok(());
        };
        let out = self
            .core
            .engine
            .exec(id, title, &request, Output::Logged)
            .await?;
        self.judge_watched(id, title, out).map(drop)
    }

    /// The end of a script under the join watch (`join_watch::watched_install`): when the watch stopped the
    /// service, the reason k3s logged and what to do; else a non-zero exit is a failure.
    pub(super) fn judge_watched(
        &self,
        id: HostId,
        title: &str,
        out: ExecOutput,
    ) -> Result<ExecOutput, Failure> {
        let state = &self.hosts[id];
        if let Some(spec) = &state.spec
            && out.exit == Exit::Status(join_watch::STOPPED_EXIT)
            && let Some(reason) = join_watch::stopped_reason(
                self.inventory,
                &state.host,
                spec,
                &String::from_utf8_lossy(&out.stderr),
            )
        {
            return Err(Failure {
                kind: FailureKind::Exited,
                exit_code: Some(join_watch::STOPPED_EXIT),
                reason: self.core.engine.log().redactor().redact(&reason),
            });
        }
        self.core.engine.checked(title, out, Output::Logged)
    }

    /// Whether the GitLab phase will run commands on the first server after verify (so the
    /// lock must be held until it is done).
    pub(super) fn gitlab_follows(&self) -> bool {
        self.options.mode == Mode::Up
            && self.inventory.gitlab.is_some()
            && self.options.gitlab.is_some()
    }

    /// The API read: wait for the first server's API; read the join token (when a joiner must
    /// install and the inventory has none) and the kubeconfig (when wanted). When no other host
    /// has anything to do, it also reads the node list for verify's first look and (without a
    /// GitLab phase after verify) releases the lock: nothing changes on any host after it.
    pub(super) fn api_plan(&self) -> ApiPlan {
        let first = self.core.first;
        let joiner_installs = self
            .hosts
            .iter()
            .any(|(id, s)| s.alive() && id != first && s.action() == Action::Install);
        let joiner_changes = self
            .hosts
            .iter()
            .any(|(id, s)| s.alive() && id != first && s.action().changes());
        let read = ApiRead {
            token: joiner_installs && self.options.token.is_none(),
            kubeconfig: self.options.kubeconfig.is_some(),
        };
        let mut script = remote::api_script(API_WAIT, read);
        if !joiner_changes {
            script = fold::api_with_nodes(&script);
        }
        ApiPlan {
            script,
            release: !joiner_changes && !self.gitlab_follows(),
        }
    }

    /// The first server: install / reconfigure / restart / upgrade it as decided, reading from
    /// its API in the same exec (`fold::then_api`). `false`: it failed and everything else was
    /// skipped.
    pub(super) async fn first_server(&mut self) -> bool {
        let first = self.core.first;
        let action = self.hosts[first].action();
        // The first server gets the inventory's token, or a fresh one on a first install (k3s
        // would make one up, but then it is never in a file we control).
        let token = match (&self.options.token, &action) {
            (Some(token), _) => Some(token.clone()),
            (None, Action::Install) => match JoinToken::generate() {
                Ok(t) => Some(t),
                Err(e) => {
                    self.hosts[first].fail(Failure::refused(e.to_string()));
                    self.skip_rest("no join token");
                    return false;
                }
            },
            (None, _) => None,
        };
        if let Some(token) = &token {
            self.core.engine.log().redactor().add(token.expose());
        }
        let observer = self.core.engine.observer().clone();
        observer.event(&Progress::PhaseStart {
            phase: "first server",
            hosts: 1,
        });
        let name = self.first_name();
        observer.event(&Progress::HostStart {
            phase: "first server",
            host: &name,
        });
        let mut result = self.apply_first_with_api(token.as_ref()).await;
        if result.is_ok() && action == Action::Upgrade {
            result = self.wait_upgraded(first).await;
        }
        let detail = match &result {
            Ok(()) => action.done_word().to_owned(),
            Err(failure) => failure.reason.clone(),
        };
        observer.event(&Progress::HostDone {
            phase: "first server",
            host: &name,
            ok: result.is_ok(),
            detail: &detail,
        });
        observer.event(&Progress::PhaseEnd {
            phase: "first server",
        });
        match result {
            Ok(()) => {
                self.hosts[first].finished = true;
                true
            }
            Err(failure) => {
                self.hosts[first].fail(failure);
                self.first_server_lost("failed");
                false
            }
        }
    }

    /// Install / reconfigure / restart the first server and read from its API in the same exec
    /// (`fold::then_api`): the API answer is kept for `read_from_api`. The install's own output
    /// is logged; the API part holds secrets and is not.
    async fn apply_first_with_api(&mut self, token: Option<&JoinToken>) -> Result<(), Failure> {
        let first = self.core.first;
        let Some((title, mut request)) = self.install_request(first, token) else {
            return Ok(());
        };
        let api = self.api_plan();
        request.command = fold::then_api(&request.command, &api.script);
        let bound = request.timeout.unwrap_or_default() + API_WAIT;
        let request = request.timeout(bound);
        let full_title = format!("{title}, then wait for the API");
        let out = self
            .exec_releasing(first, &full_title, request, Output::Secret, api.release)
            .await?;
        let stdout = out.stdout_lossy();
        let (own, api_text) = fold::split_api(&stdout);
        let name = self.first_name();
        self.core.engine.log().write(
            &name,
            &format!("{title}: stdout (before the API read)"),
            own,
        );
        match api_text {
            // The install (or restart) failed: the API part never ran.
            None => {
                let own_out = ExecOutput {
                    stdout: own.as_bytes().to_vec(),
                    stderr: out.stderr.clone(),
                    exit: out.exit.clone(),
                    truncated: out.truncated,
                };
                self.judge_watched(first, title, own_out)?;
                Err(Failure::new(
                    FailureKind::Exited,
                    format!("{title}: the script ended before the API read"),
                ))
            }
            Some(api_text) => {
                let api_text = api_text.to_owned();
                self.api_answer = Some(
                    self.core
                        .engine
                        .checked(API_TITLE, out, Output::Secret)
                        .map(|_| api_text),
                );
                Ok(())
            }
        }
    }

    /// Wait for the first server's API and read from it (see [`Self::api_plan`]); unless the
    /// first server's install already did. `false`: it failed and everything else was skipped.
    pub(super) async fn read_from_api(&mut self) -> bool {
        let first = self.core.first;
        let result = match self.api_answer.take() {
            // Already read in the first server's install exec.
            Some(answer) => answer,
            None => {
                let api = self.api_plan();
                let request = ExecRequest::new(api.script)
                    .sudo(true)
                    .timeout(API_WAIT + join_watch::STOP_GRACE);
                let observer = self.core.engine.observer().clone();
                observer.event(&Progress::PhaseStart {
                    phase: "api",
                    hosts: 1,
                });
                let result = self
                    .run_releasing(first, API_TITLE, request, Output::Secret, api.release)
                    .await;
                observer.event(&Progress::PhaseEnd { phase: "api" });
                result.map(|out| out.stdout_lossy())
            }
        };
        let stdout = match result {
            Ok(stdout) => stdout,
            Err(failure) => {
                let first_name = self.first_name();
                let reason = failure.reason.clone();
                self.hosts[first].fail(failure);
                self.message(format!(
                    "first server {first_name}: its API did not come up: skipping the other servers, agents, kubeconfig and verify"
                ));
                self.skip_rest(&format!(
                    "first server {first_name}'s API did not come up ({reason}): nothing that depends on it was attempted"
                ));
                return false;
            }
        };
        let (api_text, nodes_text) = fold::split_nodes(&stdout);
        if let Some(nodes_text) = nodes_text {
            self.core.engine.log().write(
                &self.first_name(),
                "nodes (read with the API)",
                nodes_text,
            );
            self.prefetched_nodes = Some(nodes_text.to_owned());
        }
        let (token_text, kubeconfig) = remote::parse_api_output(api_text);
        self.kubeconfig_text = kubeconfig;
        self.join_token = match (&self.options.token, token_text) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(text)) => match JoinToken::parse(&text) {
                Ok(token) => {
                    self.core.engine.log().redactor().add(token.expose());
                    Some(token)
                }
                Err(e) => {
                    let reason =
                        format!("the node-token on {} is unusable: {e}", self.first_name());
                    self.skip_rest(&reason);
                    return false;
                }
            },
            (None, None) => None,
        };
        true
    }

    /// Servers other than the first that change, in inventory order.
    pub(super) fn joining_servers(&self) -> Vec<HostId> {
        let first = self.core.first;
        self.alive_where(|id, s| id != first && s.host.role == Role::Server && s.action().changes())
    }

    /// Agents that change, in inventory order.
    pub(super) fn joining_agents(&self) -> Vec<HostId> {
        self.alive_where(|_, s| s.host.role == Role::Agent && s.action().changes())
    }

    /// The other servers, one at a time (etcd must keep quorum while members join); after a
    /// failure the rest are skipped with the reason.
    pub(super) async fn other_servers(&mut self, servers: &[HostId]) {
        let token = self.join_token.clone();
        let failed: Mutex<Option<String>> = Mutex::new(None);
        let this = &*self;
        let (token, failed_ref) = (token.as_ref(), &failed);
        let results = this
            .core
            .engine
            .each_noting(
                "servers",
                servers,
                1,
                |id| this.join_server(id, token, failed_ref),
                |id, _| this.hosts[id].action().done_word().to_owned(),
            )
            .await;
        for (id, result) in results {
            match result {
                Err(failure) if failure.kind == FailureKind::Skipped => {
                    self.hosts[id].skip(failure.reason)
                }
                Err(failure) => self.hosts[id].fail(failure),
                Ok(()) => self.hosts[id].finished = true,
            }
        }
    }

    /// One server of the one-at-a-time roll: skipped with the reason once one before it failed.
    async fn join_server(
        &self,
        id: HostId,
        token: Option<&JoinToken>,
        failed: &Mutex<Option<String>>,
    ) -> Result<(), Failure> {
        let before = failed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(prev) = before {
            return Err(Failure::skipped(format!(
                "server {prev} failed to join; servers join one at a time, so this one waited"
            )));
        }
        let mut result = self.apply(id, token).await;
        if result.is_ok() && self.hosts[id].action() == Action::Upgrade {
            // An upgraded server is Ready at the new version before the next one goes.
            result = self.wait_upgraded(id).await;
        }
        if result.is_err() {
            *failed.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(self.core.engine.name(id).to_owned());
        }
        result
    }

    /// Wait (through the first server) until `id`'s node is Ready at the pinned version.
    pub(super) async fn wait_upgraded(&self, id: HostId) -> Result<(), Failure> {
        let Some(version) = &self.version else {
            return Ok(());
        };
        steps::wait_node_version(
            &self.core.engine,
            self.core.first,
            &self.hosts[id].host.node_name,
            version,
            self.options.ready_timeout,
            self.hosts[self.core.first].host.ssh.command_timeout,
        )
        .await
    }

    /// The agents, in one window (the fleet's concurrency).
    pub(super) async fn agents(&mut self, agents: &[HostId]) {
        let token = self.join_token.clone();
        let (this, token) = (&*self, token.as_ref());
        let results = this
            .core
            .engine
            .each_noting(
                "agents",
                agents,
                this.core.engine.settings().concurrency,
                |id| this.apply(id, token),
                |id, _| this.hosts[id].action().done_word().to_owned(),
            )
            .await;
        for (id, result) in results {
            match result {
                Err(failure) => self.hosts[id].fail(failure),
                Ok(()) => self.hosts[id].finished = true,
            }
        }
    }

    /// Merge the kubeconfig read with the API into the user's (when `up` was asked to).
    pub(super) fn merge_kubeconfig(&mut self) {
        let (Some(target), Some(text)) =
            (self.options.kubeconfig.clone(), self.kubeconfig_text.take())
        else {
            return;
        };
        match merge_kubeconfig(self.inventory, &self.first_name(), &text, &target) {
            Ok(changed) => {
                self.kubeconfig_written = Some(format!(
                    "{} (context {}{})",
                    target.path.display(),
                    target.context,
                    if changed { "" } else { ", unchanged" }
                ));
            }
            Err(e) => {
                let reason = format!("{e:#}");
                self.message(format!("kubeconfig: {reason}"));
                self.kubeconfig_error = Some(reason);
            }
        }
    }
}
