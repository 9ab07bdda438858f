//! The run state of `up` / `plan` / `status`: the engine with the hosts of the run, each host's
//! state between phases (indexed by [`HostId`]), the run-level results, the steps every phase
//! shares (one exec that may carry the lock's release, fail / skip), and the report at the end.

use super::*;

/// One host's state between phases.
pub(super) struct HostState {
    pub(super) host: Host,
    pub(super) facts: Option<Facts>,
    pub(super) warnings: Vec<String>,
    pub(super) spec: Option<InstallSpec>,
    pub(super) decision: Option<Decision>,
    /// Final status once known; `None` while work remains.
    pub(super) status: Option<Status>,
    /// Why it failed or was skipped (kind, exit code, reason).
    pub(super) failure: Option<Failure>,
    /// Its change (install, reconfigure, restart, upgrade) ran to its end.
    pub(super) finished: bool,
}

impl HostState {
    pub(super) fn new(host: Host) -> HostState {
        HostState {
            host,
            facts: None,
            warnings: Vec::new(),
            spec: None,
            decision: None,
            status: None,
            failure: None,
            finished: false,
        }
    }

    pub(super) fn alive(&self) -> bool {
        self.status.is_none()
    }

    pub(super) fn fail(&mut self, failure: Failure) {
        self.status = Some(Status::Failed);
        self.failure = Some(failure);
    }

    /// Not attempted because of `why` (a host that already ended keeps its own result).
    pub(super) fn skip(&mut self, why: impl Into<String>) {
        if self.status.is_none() {
            self.status = Some(Status::Skipped);
            self.failure = Some(Failure::skipped(why));
        }
    }

    pub(super) fn action(&self) -> Action {
        self.decision
            .as_ref()
            .map_or(Action::Nothing, |d| d.action.clone())
    }

    pub(super) fn reason(&self) -> Option<&str> {
        self.failure.as_ref().map(|f| f.reason.as_str())
    }

    /// Whether its live facts say k3s runs there as a server.
    pub(super) fn runs_server(&self) -> bool {
        self.facts
            .as_ref()
            .is_some_and(|f| f.installed_role() == Some(Role::Server))
    }
}

/// Everything `up`, `plan` and `status` keep during a run.
pub(super) struct Runner<'a> {
    pub(super) inventory: &'a Inventory,
    /// The engine, the first server, the cluster lock (`cluster_lock`), notes, phase records.
    pub(super) core: RunCore,
    pub(super) options: UpOptions,
    pub(super) hosts: PerHost<HostState>,
    pub(super) version: Option<K3sVersion>,
    pub(super) version_source: Option<String>,
    pub(super) nodes: Vec<NodeRow>,
    pub(super) kubeconfig_written: Option<String>,
    pub(super) kubeconfig_error: Option<String>,
    /// The node list read along with the API (see `read_from_api`), for verify's first look.
    pub(super) prefetched_nodes: Option<String>,
    /// The API read's stdout, or why it failed, when the first server's install did it.
    pub(super) api_answer: Option<Result<String, Failure>>,
    /// The join token the joiners get, once the API was read.
    pub(super) join_token: Option<JoinToken>,
    /// The kubeconfig read with the API, to merge.
    pub(super) kubeconfig_text: Option<String>,
    /// `status`: the node list read with the first server's facts.
    pub(super) status_nodes: Option<Vec<NodeStatus>>,
    /// What the GitLab phase did, would do or found; `None` when it did not run.
    pub(super) gitlab: Option<GitLabReport>,
}

crate::phases::run_core::impl_run!(Runner<'_>);

impl<'a> Runner<'a> {
    /// The run state over `engine`, whose hosts are `hosts` (same names).
    pub(super) fn new(
        inventory: &'a Inventory,
        hosts: &[Host],
        engine: Engine,
        options: UpOptions,
    ) -> anyhow::Result<Runner<'a>> {
        let core = RunCore::new(engine, inventory, "edgeops up")?;
        let hosts = inventory_hosts(&core.engine, hosts)?.map(|_, h| HostState::new(h.clone()));
        Ok(Runner {
            inventory,
            core,
            options,
            hosts,
            version: None,
            version_source: None,
            nodes: Vec::new(),
            kubeconfig_written: None,
            kubeconfig_error: None,
            prefetched_nodes: None,
            api_answer: None,
            join_token: None,
            kubeconfig_text: None,
            status_nodes: None,
            gitlab: None,
        })
    }

    pub(super) fn name(&self, id: HostId) -> &str {
        self.core.name(id)
    }

    pub(super) fn first_name(&self) -> String {
        self.core.first_name().to_owned()
    }

    pub(super) fn message(&mut self, text: String) {
        self.core.message(text);
    }

    /// The hosts still at work that `keep` selects, in inventory order.
    pub(super) fn alive_where(&self, keep: impl Fn(HostId, &HostState) -> bool) -> Vec<HostId> {
        self.hosts
            .iter()
            .filter(|(id, s)| s.alive() && keep(*id, s))
            .map(|(id, _)| id)
            .collect()
    }

    /// Skip every host still waiting, because `why`.
    pub(super) fn skip_rest(&mut self, why: &str) {
        for (_, state) in self.hosts.iter_mut() {
            state.skip(why);
        }
    }

    /// The first server failed: one message, and every other host skipped with why.
    pub(super) fn first_server_lost(&mut self, what: &str) {
        let first = self.first_name();
        let reason = self.hosts[self.core.first]
            .reason()
            .unwrap_or("unknown reason")
            .to_owned();
        self.message(format!(
            "first server {first} {what}: skipping the other servers, agents, kubeconfig and verify"
        ));
        self.skip_rest(&format!(
            "first server {first} {what} ({reason}): nothing that depends on it was attempted"
        ));
    }

    /// Run `request` on `id` to its end and log it, carrying the lock's release when `release`,
    /// this run holds the lock and `id` is the first server (`fold::then_release`: the last
    /// command of the run there). The lock counts as released only once the release part
    /// reported that it ran.
    pub(super) async fn exec_releasing(
        &mut self,
        id: HostId,
        title: &str,
        mut request: ExecRequest,
        output: Output,
        release: bool,
    ) -> Result<ExecOutput, Failure> {
        let core = &mut self.core;
        if !(release && core.lock.is_held() && id == core.first) {
            return core.engine.exec(id, title, &request, output).await;
        }
        request.command = fold::then_release(&request.command, core.lock.run_id());
        let mut out = core.engine.exec(id, title, &request, output).await?;
        if fold::take_released(&mut out.stdout) {
            core.lock.gone();
        }
        Ok(out)
    }

    /// [`Self::exec_releasing`], a non-zero exit being a failure.
    pub(super) async fn run_releasing(
        &mut self,
        id: HostId,
        title: &str,
        request: ExecRequest,
        output: Output,
        release: bool,
    ) -> Result<ExecOutput, Failure> {
        let out = self
            .exec_releasing(id, title, request, output, release)
            .await?;
        self.core.engine.checked(title, out, output)
    }

    /// After Ctrl-C (or SIGTERM, SIGHUP): a host whose change never ran to its end is
    /// reported as cancelled, not as done.
    pub(super) fn cancel_unfinished(&mut self) {
        for (_, state) in self.hosts.iter_mut() {
            if state.alive() && !state.finished && state.action().changes() {
                state.fail(Failure::new(
                    FailureKind::Cancelled,
                    "cancelled: the run was interrupted before this host's change was done",
                ));
            }
        }
    }

    // ---- report ------------------------------------------------------------------------------

    pub(super) fn report(mut self) -> RunReport {
        let pinned = self.version.as_ref().map(|v| v.to_string());
        let mut hosts = Vec::new();
        for (id, state) in self.hosts.iter() {
            let action = state.action();
            let status = state.status.unwrap_or(if action.changes() {
                Status::Done
            } else {
                Status::Unchanged
            });
            let result = match status {
                Status::Done | Status::Unchanged => action.done_word(),
                Status::Planned => match state.decision.as_ref().map(|d| &d.action) {
                    None | Some(Action::Nothing) => "nothing to do",
                    Some(Action::Install) => "would install",
                    Some(Action::Reconfigure) => "would reconfigure",
                    Some(Action::Restart) => "would restart",
                    Some(Action::Upgrade) => "would upgrade",
                },
                Status::Failed => "failed",
                Status::Skipped => "skipped",
            };
            let end = HostEnd {
                status,
                result: result.to_owned(),
                failure: state.failure.clone(),
            };
            let facts = state.facts.as_ref();
            hosts.push(HostReport {
                line: HostLine::new(&self.core.engine, id, state.host.role, &end),
                arch: facts.map(|f| {
                    f.arch
                        .map(|a| a.as_str().to_owned())
                        .unwrap_or_else(|| f.machine.clone())
                }),
                version: match status {
                    Status::Done => pinned.clone(),
                    _ => facts
                        .and_then(|f| f.k3s_version.as_ref())
                        .map(|v| v.to_string()),
                },
                decision: state.decision.clone(),
                warnings: state.warnings.clone(),
                facts: None,
            });
        }
        RunReport {
            cluster: self.inventory.cluster.name.clone(),
            version: pinned,
            version_source: self.version_source.clone(),
            dry_run: self.options.mode == Mode::Plan,
            hosts,
            nodes: self.nodes,
            kubeconfig: self.kubeconfig_written,
            kubeconfig_error: self.kubeconfig_error,
            log_dir: self.core.log_dir(),
            messages: std::mem::take(&mut self.core.messages),
            gitlab: self.gitlab.or_else(|| {
                // `up` with `[gitlab]` that stopped before the phase: say so, and fail the run.
                (self.options.mode == Mode::Up && self.options.gitlab.is_some())
                    .then(|| GitLabReport::skipped("the cluster did not come up"))
            }),
            phases: std::mem::take(&mut self.core.phases),
        }
    }
}
