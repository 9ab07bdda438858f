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

/// Times every phase (wall clock, start to end) on its way to the real observer.
pub(super) struct PhaseClock {
    inner: Arc<dyn Observer>,
    running: Mutex<Vec<(String, Instant)>>,
    done: Mutex<Vec<PhaseTime>>,
}

impl PhaseClock {
    pub(super) fn new(inner: Arc<dyn Observer>) -> Arc<PhaseClock> {
        Arc::new(PhaseClock {
            inner,
            running: Mutex::new(Vec::new()),
            done: Mutex::new(Vec::new()),
        })
    }
}

impl Observer for PhaseClock {
    fn event(&self, event: &Progress<'_>) {
        match event {
            Progress::PhaseStart { phase, .. } => self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((phase.to_string(), Instant::now())),
            Progress::PhaseEnd { phase } => {
                let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(i) = running.iter().position(|(p, _)| p == phase) {
                    let (name, started) = running.remove(i);
                    self.done
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(PhaseTime {
                            phase: name,
                            seconds: started.elapsed().as_secs_f64(),
                        });
                }
            }
            _ => {}
        }
        self.inner.event(event);
    }
}

/// Everything `up`, `plan` and `status` keep during a run.
pub(super) struct Runner<'a> {
    pub(super) inventory: &'a Inventory,
    pub(super) engine: Engine,
    pub(super) clock: Arc<PhaseClock>,
    pub(super) options: UpOptions,
    pub(super) hosts: PerHost<HostState>,
    pub(super) first: HostId,
    pub(super) messages: Vec<String>,
    pub(super) version: Option<K3sVersion>,
    pub(super) version_source: Option<String>,
    pub(super) nodes: Vec<NodeRow>,
    pub(super) kubeconfig_written: Option<String>,
    pub(super) kubeconfig_error: Option<String>,
    pub(super) run_id: String,
    /// This run holds the lock on the first server.
    pub(super) locked: bool,
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

impl<'a> Runner<'a> {
    /// Connect to every host (one fleet, inventory order) and make the run state.
    pub(super) async fn connect(
        inventory: &'a Inventory,
        hosts: Vec<Host>,
        targets: Vec<ConnectOptions>,
        ctx: SshContext,
        options: UpOptions,
        observer: Arc<dyn Observer>,
        log: RunLog,
    ) -> anyhow::Result<Runner<'a>> {
        let clock = PhaseClock::new(observer);
        let engine = Engine::connect(targets, ctx, options.fleet.clone(), log, clock.clone()).await;
        Runner::new(inventory, hosts, engine, clock, options)
    }

    /// The run state over `engine`, whose hosts are `hosts` (same names).
    pub(super) fn new(
        inventory: &'a Inventory,
        hosts: Vec<Host>,
        engine: Engine,
        clock: Arc<PhaseClock>,
        options: UpOptions,
    ) -> anyhow::Result<Runner<'a>> {
        let first_name = first_server(inventory)?.name.clone();
        let mut by_name: Vec<Option<Host>> = hosts.into_iter().map(Some).collect();
        let mut states = Vec::new();
        for id in engine.ids() {
            let name = engine.name(id);
            let host = by_name
                .iter_mut()
                .find(|h| h.as_ref().is_some_and(|h| h.name == name))
                .and_then(Option::take)
                .ok_or_else(|| anyhow::anyhow!("{name}: connected but not a host of this run"))?;
            states.push(HostState::new(host));
        }
        let first = engine
            .id_of(&first_name)
            .ok_or_else(|| anyhow::anyhow!("the first server {first_name} is not in this run"))?;
        Ok(Runner {
            inventory,
            engine,
            clock,
            options,
            hosts: PerHost::new(states),
            first,
            messages: Vec::new(),
            version: None,
            version_source: None,
            nodes: Vec::new(),
            kubeconfig_written: None,
            kubeconfig_error: None,
            run_id: super::super::lock::new_run_id(),
            locked: false,
            prefetched_nodes: None,
            api_answer: None,
            join_token: None,
            kubeconfig_text: None,
            status_nodes: None,
            gitlab: None,
        })
    }

    pub(super) fn name(&self, id: HostId) -> &str {
        self.engine.name(id)
    }

    pub(super) fn first_name(&self) -> String {
        self.engine.name(self.first).to_owned()
    }

    pub(super) fn message(&mut self, text: String) {
        self.engine.note(&text);
        self.messages.push(text);
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
        let reason = self.hosts[self.first]
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
        if !(release && self.locked && id == self.first) {
            return self.engine.exec(id, title, &request, output).await;
        }
        request.command = fold::then_release(&request.command, &self.run_id);
        let mut out = self.engine.exec(id, title, &request, output).await?;
        if fold::take_released(&mut out.stdout) {
            self.locked = false;
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
        self.engine.checked(title, out, output)
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

    pub(super) fn report(self) -> RunReport {
        let pinned = self.version.as_ref().map(|v| v.to_string());
        let mut hosts = Vec::new();
        for (id, state) in self.hosts.iter() {
            let name = self.engine.name(id);
            let busy = self.engine.busy(id);
            let action = state.action();
            let status = state.status.unwrap_or(if action.changes() {
                Status::Done
            } else {
                Status::Unchanged
            });
            let result = match status {
                Status::Done | Status::Unchanged => action.done_word().to_owned(),
                Status::Planned => match &state.decision {
                    Some(d) => match d.action {
                        Action::Nothing => "nothing to do".to_owned(),
                        Action::Install => "would install".to_owned(),
                        Action::Reconfigure => "would reconfigure".to_owned(),
                        Action::Restart => "would restart".to_owned(),
                        Action::Upgrade => "would upgrade".to_owned(),
                    },
                    None => "nothing to do".to_owned(),
                },
                Status::Failed => "failed".to_owned(),
                Status::Skipped => "skipped".to_owned(),
            };
            let facts = state.facts.as_ref();
            let version = match status {
                Status::Done => pinned.clone(),
                _ => facts
                    .and_then(|f| f.k3s_version.as_ref())
                    .map(|v| v.to_string()),
            };
            let failure = state
                .failure
                .as_ref()
                .filter(|_| matches!(status, Status::Failed | Status::Skipped));
            hosts.push(HostReport {
                host: name.to_owned(),
                role: state.host.role.as_str(),
                arch: facts.map(|f| {
                    f.arch
                        .map(|a| a.as_str().to_owned())
                        .unwrap_or_else(|| f.machine.clone())
                }),
                version,
                status,
                result,
                decision: state.decision.clone(),
                reason: state.failure.as_ref().map(|f| f.reason.clone()),
                failure: failure.map(|f| f.kind),
                exit_code: failure.and_then(|f| f.exit_code),
                warnings: state.warnings.clone(),
                seconds: busy.time.as_secs_f64(),
                commands: busy.commands,
                log: self
                    .engine
                    .log()
                    .host_file(name)
                    .map(|p| p.display().to_string()),
                facts: None,
            });
        }
        let phases =
            std::mem::take(&mut *self.clock.done.lock().unwrap_or_else(|e| e.into_inner()));
        RunReport {
            cluster: self.inventory.cluster.name.clone(),
            version: pinned,
            version_source: self.version_source.clone(),
            dry_run: self.options.mode == Mode::Plan,
            hosts,
            nodes: self.nodes,
            kubeconfig: self.kubeconfig_written,
            kubeconfig_error: self.kubeconfig_error,
            log_dir: self.engine.log().dir().map(|d| d.display().to_string()),
            messages: self.messages,
            gitlab: self.gitlab.or_else(|| {
                // `up` with `[gitlab]` that stopped before the phase: say so, and fail the run.
                (self.options.mode == Mode::Up && self.options.gitlab.is_some())
                    .then(|| GitLabReport::skipped("the cluster did not come up"))
            }),
            phases,
        }
    }
}
