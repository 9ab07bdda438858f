//! The orchestration of `up` / `plan` / `status` over one fleet: phases in order, per-host state
//! between them, and a [`RunReport`] at the end. One failing host never hides the others; a dead
//! first server stops only what depends on it.
//!
//! - `cluster_lock`: the lock on the first server, taken and released inside other round trips.
//! - `prepare`: Raspberry Pi cgroups (reboot, reconnect) and air-gap delivery before installs.
//! - `verify`: polling the nodes until Ready as the inventory says.
//! - `access`: `kubeconfig` and `status`, the read-only uses of a connected fleet.

mod access;
mod cluster_lock;
mod prepare;
mod quorum_guard;
mod skew_guard;
mod token_guard;
mod verify;

use access::merge_kubeconfig;
pub use access::{fetch_kubeconfig, status};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;

use crate::engine::FleetEvents;
use crate::fleet::{Fleet, FleetSettings};
use crate::inventory::{Host, Inventory, Role};
use crate::k3s::airgap as k3s_airgap;
use crate::k3s::install::{InstallSpec, Join, first_server};
use crate::k3s::nodes::{self, NodeStatus};
use crate::k3s::{Channel, ChannelResolver, JoinToken, K3sArch, K3sVersion};
use crate::render::renderer_for;
use crate::ssh::{ConnectOptions, ExecOutput, ExecRequest, SshContext};

use super::airgap;
use super::decide::{Action, Decision, decide};
use super::facts::{self, Facts};
use super::fold;
use super::gitlab::{self as gitlab_phase, GitLabReport, GitLabSetup, LockRelease, PhaseContext};
use super::join;
use super::outcome::{Busy, HostReport, NodeRow, PhaseTime, RunReport, Status, last_lines, record};
use super::preflight;
use super::remote::{self, ApiRead, LockAnswer};
use super::{Observer, Progress};
use crate::engine::runlog::RunLog;

/// `up` changes hosts; `plan` only decides; `status` only reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    Plan,
}

/// Where `up` merges the cluster's kubeconfig.
#[derive(Debug, Clone)]
pub struct KubeconfigTarget {
    pub path: PathBuf,
    pub context: String,
}

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub mode: Mode,
    /// How long verify waits for every node to be Ready.
    pub ready_timeout: Duration,
    /// `None`: leave the user's kubeconfig alone.
    pub kubeconfig: Option<KubeconfigTarget>,
    /// A lock older than this is taken over (its run is presumed dead).
    pub lock_stale_after: Duration,
    pub fleet: FleetSettings,
    /// Join token from the inventory (already read and validated), if it names one.
    pub token: Option<JoinToken>,
    /// What to do with Raspberry Pis that need the memory cgroup enabled.
    pub reboot: Reboot,
    /// The GitLab phase's token and flags; `None` when the inventory has no `[gitlab]`.
    pub gitlab: Option<GitLabSetup>,
    /// A token that differs from the running cluster's is rotated to (`--rotate-join-token`)
    /// instead of stopping the run.
    pub rotate_join_token: bool,
}

/// Rebooting Raspberry Pis whose cmdline.txt needed the memory cgroup flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reboot {
    /// Edit and reboot them all at once (the default).
    AllAtOnce,
    /// One at a time (`--serial`).
    Serial,
    /// Never (`--no-reboot`): such hosts fail with the reason.
    Never,
}

/// How long a rebooting Pi may take to answer SSH again.
const REBOOT_WAIT: Duration = Duration::from_secs(300);

/// The first server needs this long at most to bring its API up after an install.
const API_WAIT: Duration = Duration::from_secs(180);
/// How long one channel-server request may take.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(30);
/// Air-gap uploads in flight at once, fleet-wide (each holds its file in memory).
const AIRGAP_UPLOADS: usize = 4;
/// Pause between node polls during verify.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// The step that waits for the first server's API and reads from it.
const API_TITLE: &str = "wait for the API";

/// One host's state between phases.
struct HostState {
    host: Host,
    facts: Option<Facts>,
    warnings: Vec<String>,
    spec: Option<InstallSpec>,
    decision: Option<Decision>,
    /// Final status once known; `None` while work remains.
    status: Option<Status>,
    reason: Option<String>,
}

impl HostState {
    fn alive(&self) -> bool {
        self.status.is_none()
    }

    fn fail(&mut self, reason: impl Into<String>) {
        self.status = Some(Status::Failed);
        self.reason = Some(reason.into());
    }

    fn skip(&mut self, reason: impl Into<String>) {
        if self.status.is_none() {
            self.status = Some(Status::Skipped);
            self.reason = Some(reason.into());
        }
    }

    fn action(&self) -> Action {
        self.decision
            .as_ref()
            .map_or(Action::Nothing, |d| d.action.clone())
    }
}

/// Times every phase (wall clock, start to end) on its way to the real observer.
struct PhaseClock {
    inner: Arc<dyn Observer>,
    running: Mutex<Vec<(String, Instant)>>,
    done: Mutex<Vec<PhaseTime>>,
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

struct Runner<'a> {
    inventory: &'a Inventory,
    fleet: Fleet,
    observer: Arc<PhaseClock>,
    log: RunLog,
    options: UpOptions,
    hosts: BTreeMap<String, HostState>,
    /// Host names in inventory order.
    order: Vec<String>,
    first: String,
    /// Per host: time spent in remote commands, and how many commands (round trips) ran.
    busy: Mutex<HashMap<String, Busy>>,
    messages: Vec<String>,
    version: Option<K3sVersion>,
    version_source: Option<String>,
    nodes: Vec<NodeRow>,
    kubeconfig_written: Option<String>,
    kubeconfig_error: Option<String>,
    run_id: String,
    /// This run holds the lock on the first server.
    locked: bool,
    /// The node list read along with the API (see `read_from_api`), for verify's first look.
    prefetched_nodes: Option<String>,
    /// The API read's stdout, or why it failed, when the first server's install did it.
    api_answer: Option<Result<String, String>>,
    /// What the GitLab phase did, would do or found; `None` when it did not run.
    gitlab: Option<GitLabReport>,
}

/// Run `up` or `plan` over `hosts` (the selection; the first server is added when `--limit`
/// left it out, since everything depends on it).
pub async fn run(
    inventory: &Inventory,
    hosts: Vec<Host>,
    targets: Vec<ConnectOptions>,
    ctx: SshContext,
    options: UpOptions,
    observer: Arc<dyn Observer>,
    log: RunLog,
) -> anyhow::Result<RunReport> {
    let mut runner =
        Runner::connect(inventory, hosts, targets, ctx, options, observer, log).await?;
    let result = runner.up().await;
    runner.release_lock().await;
    runner.fleet.close_all().await;
    result?;
    Ok(runner.report())
}

impl<'a> Runner<'a> {
    async fn connect(
        inventory: &'a Inventory,
        hosts: Vec<Host>,
        targets: Vec<ConnectOptions>,
        ctx: SshContext,
        options: UpOptions,
        observer: Arc<dyn Observer>,
        log: RunLog,
    ) -> anyhow::Result<Runner<'a>> {
        let first = first_server(inventory)?.name.clone();
        let order: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
        let observer = Arc::new(PhaseClock {
            inner: observer,
            running: Mutex::new(Vec::new()),
            done: Mutex::new(Vec::new()),
        });
        let fleet = Fleet::connect_all(
            targets,
            ctx,
            options.fleet.clone(),
            Arc::new(FleetEvents(observer.clone())),
        )
        .await;
        let states = hosts
            .into_iter()
            .map(|host| {
                (
                    host.name.clone(),
                    HostState {
                        host,
                        facts: None,
                        warnings: Vec::new(),
                        spec: None,
                        decision: None,
                        status: None,
                        reason: None,
                    },
                )
            })
            .collect();
        let run_id = super::lock::new_run_id();
        Ok(Runner {
            inventory,
            fleet,
            observer,
            log,
            options,
            hosts: states,
            order,
            first,
            busy: Mutex::new(HashMap::new()),
            messages: Vec::new(),
            version: None,
            version_source: None,
            nodes: Vec::new(),
            kubeconfig_written: None,
            kubeconfig_error: None,
            run_id,
            locked: false,
            prefetched_nodes: None,
            api_answer: None,
            gitlab: None,
        })
    }

    /// The state of a host of this run (names only ever come from `self.order`).
    fn state_mut(&mut self, name: &str) -> &mut HostState {
        self.hosts
            .get_mut(name)
            .expect("every host of the run has a state")
    }

    fn message(&mut self, text: String) {
        self.observer.event(&Progress::Message { text: &text });
        self.messages.push(text);
    }

    async fn up(&mut self) -> anyhow::Result<()> {
        if self.options.mode == Mode::Up {
            self.facts_and_lock().await?;
        } else {
            self.gather_facts().await;
        }
        self.preflight();
        self.sudo_preflight().await;
        if !self.first_server_alive() {
            return Ok(());
        }
        self.resolve_version().await?;
        self.decide_all();
        if self.options.mode == Mode::Plan {
            self.plan_airgap();
            for state in self.hosts.values_mut().filter(|s| s.alive()) {
                state.status = Some(Status::Planned);
            }
            self.gitlab_phase(GitLabStep::Plan).await;
            return Ok(());
        }
        if !self.minor_steps_allowed().await
            || !self.join_token_matches().await
            || !self.quorum_allows_restarts().await
        {
            return Ok(());
        }
        self.pi_cgroups().await?;
        self.airgap().await?;
        if !self.first_server().await {
            return Ok(());
        }
        let Some((token, kubeconfig)) = self.read_from_api().await else {
            return Ok(());
        };
        self.other_servers(token.as_ref()).await;
        self.agents(token.as_ref()).await;
        if let Some(text) = kubeconfig {
            self.merge_kubeconfig(&text);
        }
        self.verify().await;
        self.gitlab_phase(GitLabStep::Up).await;
        Ok(())
    }

    /// The GitLab phase (see `phases::gitlab`), when the inventory has `[gitlab]`. On `up` it
    /// runs once the first server is up (other hosts failing does not stop it: the charts only
    /// need the first server).
    async fn gitlab_phase(&mut self, step: GitLabStep) {
        let Some(gitlab) = &self.inventory.gitlab else {
            return;
        };
        let first = self.first.clone();
        let first_ok = match step {
            GitLabStep::Status => self.hosts[&first]
                .facts
                .as_ref()
                .is_some_and(|f| f.installed_role() == Some(Role::Server)),
            _ => self.hosts[&first]
                .status
                .is_none_or(|s| s == Status::Planned),
        };
        if !first_ok && step == GitLabStep::Status {
            // No cluster yet, as the messages already say: nothing to report, nothing failed.
            return;
        }
        let session = self.fleet.session(&first).cloned();
        let (true, Some(session)) = (first_ok, session) else {
            let why = self.hosts[&first]
                .reason
                .clone()
                .unwrap_or_else(|| "no running k3s server".to_owned());
            self.gitlab = Some(GitLabReport::skipped(format!(
                "the first server {first} failed ({why}): the charts need it"
            )));
            return;
        };
        let renderer = match renderer_for(self.inventory) {
            Ok(renderer) => renderer,
            Err(e) => {
                self.gitlab = Some(GitLabReport::skipped(format!("templates: {e:#}")));
                return;
            }
        };
        let released = AtomicBool::new(false);
        let cx = PhaseContext {
            inventory: self.inventory,
            gitlab,
            renderer: &renderer,
            first: &first,
            session,
            log: &self.log,
            observer: self.observer.as_ref(),
            node_arch: self.node_arch(),
            lock_release: (step == GitLabStep::Up && self.locked).then_some(LockRelease {
                run_id: &self.run_id,
                released: &released,
            }),
        };
        let setup = self.options.gitlab.clone();
        let report = match (step, setup) {
            (GitLabStep::Up, Some(setup)) => gitlab_phase::up(&cx, &setup).await,
            (GitLabStep::Plan, setup) => {
                gitlab_phase::plan(&cx, setup.is_some_and(|s| s.rotate_tokens)).await
            }
            (GitLabStep::Status, _) => gitlab_phase::status(&cx).await,
            (GitLabStep::Up, None) => {
                GitLabReport::skipped("no GitLab API token was given to this run")
            }
        };
        if released.load(Ordering::SeqCst) {
            self.locked = false;
        }
        self.gitlab = Some(report);
    }

    /// The `kubernetes.io/arch` every agent shares (servers when there are no agents), for the
    /// runner's node selector; `None` when they differ or are unknown.
    fn node_arch(&self) -> Option<String> {
        let arch_of = |role: Role| -> Vec<Option<&'static str>> {
            self.hosts
                .values()
                .filter(|s| s.host.role == role)
                .map(|s| s.facts.as_ref().and_then(|f| f.arch).map(|a| a.as_str()))
                .collect()
        };
        let mut archs = arch_of(Role::Agent);
        if archs.is_empty() {
            archs = arch_of(Role::Server);
        }
        let first = (*archs.first()?)?;
        archs
            .iter()
            .all(|a| *a == Some(first))
            .then(|| first.to_owned())
    }

    // ---- steps on one host -------------------------------------------------------------

    /// Run one request on `host`, logging the command and its full output (redacted) to the
    /// host's log, and turning a non-zero exit into a reason. `secret_output`: the output holds
    /// secrets (token, kubeconfig) and is not logged at all.
    async fn step(
        &self,
        host: &str,
        title: &str,
        request: ExecRequest,
        secret_output: bool,
    ) -> Result<ExecOutput, String> {
        let out = self
            .exec_logged(host, title, &request, secret_output)
            .await?;
        self.exit_checked(title, out, secret_output)
    }

    /// Like [`Self::step`], and, while this run holds the lock, release it in the same exec
    /// (see `fold::then_release`): for the last command of the run on the first server.
    async fn step_releasing(
        &mut self,
        host: &str,
        title: &str,
        request: ExecRequest,
        secret_output: bool,
    ) -> Result<ExecOutput, String> {
        let out = self
            .exec_releasing(host, title, request, secret_output, true)
            .await?;
        self.exit_checked(title, out, secret_output)
    }

    /// [`Self::exec_logged`], carrying the lock's release when `release`, this run holds the
    /// lock and `host` is the first server. The lock counts as released only once the
    /// release part reported that it ran.
    async fn exec_releasing(
        &mut self,
        host: &str,
        title: &str,
        mut request: ExecRequest,
        secret_output: bool,
        release: bool,
    ) -> Result<ExecOutput, String> {
        if !(release && self.locked && host == self.first) {
            return self.exec_logged(host, title, &request, secret_output).await;
        }
        request.command = fold::then_release(&request.command, &self.run_id);
        let mut out = self
            .exec_logged(host, title, &request, secret_output)
            .await?;
        if fold::take_released(&mut out.stdout) {
            self.locked = false;
        }
        Ok(out)
    }

    /// Run `request` on `host` and log it; `Err` only when it did not run to an end
    /// (connection, timeout, Ctrl-C).
    async fn exec_logged(
        &self,
        host: &str,
        title: &str,
        request: &ExecRequest,
        secret_output: bool,
    ) -> Result<ExecOutput, String> {
        let Some(session) = self.fleet.session(host) else {
            return Err("no SSH session".to_owned());
        };
        let started = Instant::now();
        self.log
            .write(host, &format!("{title}: command"), &request.command);
        let result = session.exec(request).await;
        record(&self.busy, host, started);
        let redactor = self.log.redactor();
        match result {
            Err(e) => {
                let reason = redactor.redact(&format!("{title}: {e}"));
                self.log.write(host, &format!("{title}: error"), &reason);
                Err(reason)
            }
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if secret_output {
                    self.log.write(
                        host,
                        &format!("{title}: {} (output holds secrets, not logged)", out.exit),
                        &stderr,
                    );
                } else {
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    self.log.write(
                        host,
                        &format!("{title}: {}", out.exit),
                        &format!("--- stdout\n{stdout}--- stderr\n{stderr}"),
                    );
                }
                Ok(out)
            }
        }
    }

    /// A non-zero exit turned into a reason (the last lines of stderr, redacted).
    fn exit_checked(
        &self,
        title: &str,
        out: ExecOutput,
        secret_output: bool,
    ) -> Result<ExecOutput, String> {
        if out.success() {
            return Ok(out);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail = if secret_output {
            last_lines(&stderr, 3)
        } else {
            let both = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr);
            last_lines(
                if stderr.trim().is_empty() {
                    &both
                } else {
                    &stderr
                },
                3,
            )
        };
        Err(self
            .log
            .redactor()
            .redact(&format!("{title} failed ({}): {tail}", out.exit)))
    }

    // ---- facts and preflight ---------------------------------------------------------------

    async fn gather_facts(&mut self) {
        self.gather(None).await;
    }

    /// One facts round trip per host; `lock`: the first server runs that script instead (with
    /// sudo), its whole output kept in `lock.reply`.
    async fn gather(&mut self, lock: Option<&FirstFacts>) {
        let script = facts::script();
        let log = &self.log;
        let busy = &self.busy;
        let results = self
            .fleet
            .run("facts", |session| {
                let script = script.clone();
                async move {
                    let started = Instant::now();
                    let host = session.name();
                    let Some(lock) = lock.filter(|l| l.host == host) else {
                        let request = ExecRequest::new(script).max_output(facts::MAX_OUTPUT);
                        let out = session.exec(&request).await?;
                        record(busy, host, started);
                        facts::bounded(&out)?;
                        let stdout = out.stdout_lossy();
                        log.write(host, "facts", &stdout);
                        return Ok(Facts::parse(&stdout));
                    };
                    let request = ExecRequest::new(lock.script.clone()).sudo(true);
                    let out = match session.exec(&request).await {
                        Ok(out) => out,
                        Err(e) => {
                            *lock.reply.lock().unwrap_or_else(|e| e.into_inner()) = Some(Err(()));
                            return Err(e.into());
                        }
                    };
                    record(busy, host, started);
                    let stdout = out.stdout_lossy();
                    let facts_text = if lock.with_lock {
                        let facts_text = fold::split_facts_with_lock(&stdout).1;
                        let lock_text = stdout
                            .split_once(facts_text)
                            .map_or(stdout.as_str(), |(lock, _)| lock);
                        log.write(
                            host,
                            &format!("lock (with the facts): {}", out.exit),
                            &format!(
                                "--- stdout\n{lock_text}--- stderr\n{}",
                                String::from_utf8_lossy(&out.stderr)
                            ),
                        );
                        facts_text
                    } else {
                        fold::split_facts_with_nodes(&stdout).map_or("", |(facts, _)| facts)
                    };
                    log.write(host, "facts", facts_text);
                    let facts = Facts::parse(facts_text);
                    *lock.reply.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ok(out));
                    Ok(facts)
                }
            })
            .await;
        for result in results {
            let Some(state) = self.hosts.get_mut(&result.host) else {
                continue;
            };
            match result.outcome {
                Ok(facts) => state.facts = Some(facts),
                Err(e) => {
                    self.log.write(&result.host, "facts: error", &e.to_string());
                    state.fail(e.to_string());
                }
            }
        }
    }

    fn preflight(&mut self) {
        let hosts: Vec<&Host> = self.hosts.values().map(|s| &s.host).collect();
        let facts: HashMap<String, Facts> = self
            .hosts
            .values()
            .filter_map(|s| Some((s.host.name.clone(), s.facts.clone()?)))
            .collect();
        let verdicts = preflight::check(&hosts, &facts);
        for (name, verdict) in verdicts {
            let Some(state) = self.hosts.get_mut(&name) else {
                continue;
            };
            state.warnings.extend(verdict.warnings);
            if !verdict.refusals.is_empty() && state.alive() {
                state.fail(format!("preflight: {}", verdict.refusals.join("; ")));
            }
        }
        let mut notes = Vec::new();
        for name in &self.order {
            for warning in &self.hosts[name].warnings {
                notes.push(format!("{name}: warning: {warning}"));
            }
        }
        for note in notes {
            self.message(note);
        }
    }

    /// `sudo = "password"` hosts prove their password here, once, before any command that
    /// carries a secret (`Session::check_sudo`: the password alone, one attempt); a refusal
    /// fails the host in preflight. Other hosts cost nothing.
    async fn sudo_preflight(&mut self) {
        let names: Vec<String> = self
            .order
            .iter()
            .filter(|n| {
                let state = &self.hosts[*n];
                state.alive()
                    && matches!(state.host.ssh.sudo, crate::inventory::Sudo::Password { .. })
            })
            .cloned()
            .collect();
        if names.is_empty() {
            return;
        }
        let names = &names;
        let results = self
            .fleet
            .run("sudo check", |session| async move {
                if names.iter().any(|n| n == session.name()) {
                    session.check_sudo().await?;
                }
                Ok(())
            })
            .await;
        for result in results {
            if let (Err(e), Some(state)) = (result.outcome, self.hosts.get_mut(&result.host))
                && state.alive()
            {
                self.log
                    .write(&result.host, "sudo check: error", &e.to_string());
                state.fail(format!("preflight: {e}"));
            }
        }
    }

    /// One version for every node: the inventory's pin; else, when the cluster exists, the
    /// version its first server runs (a channel that moved on must not split the cluster);
    /// else the channel, resolved once.
    async fn resolve_version(&mut self) -> anyhow::Result<()> {
        let cluster = &self.inventory.cluster;
        if let Some(version) = &cluster.version {
            self.version = Some(
                version
                    .parse()
                    .with_context(|| format!("[cluster] version {version:?}"))?,
            );
            self.version_source = Some("pinned in the inventory".into());
            return Ok(());
        }
        let running = self.hosts[&self.first]
            .facts
            .as_ref()
            .filter(|f| f.installed_role() == Some(Role::Server))
            .and_then(|f| f.k3s_version.clone());
        if let Some(version) = running {
            self.version = Some(version);
            self.version_source = Some(format!("running on {}", self.first));
            return Ok(());
        }
        if !self.hosts[&self.first].alive() {
            // Nothing can be installed without the first server; no need to ask the channel.
            return Ok(());
        }
        let channel: Channel = cluster
            .channel
            .parse()
            .map_err(|e| anyhow::anyhow!("[cluster] channel {:?}: {e}", cluster.channel))?;
        self.observer.event(&Progress::PhaseStart {
            phase: "resolve",
            hosts: 0,
        });
        let resolver = ChannelResolver::new(CHANNEL_TIMEOUT)?;
        let version = resolver
            .resolve(&cluster.channel_url, &channel)
            .await
            .with_context(|| format!("resolving k3s channel {channel}"))?;
        self.observer
            .event(&Progress::PhaseEnd { phase: "resolve" });
        self.version = Some(version);
        self.version_source = Some(format!("channel {channel} at {}", cluster.channel_url));
        Ok(())
    }

    fn decide_all(&mut self) {
        let Some(version) = self.version.clone() else {
            return;
        };
        let renderer = match renderer_for(self.inventory) {
            Ok(r) => r,
            Err(e) => {
                for state in self.hosts.values_mut().filter(|s| s.alive()) {
                    state.fail(format!("templates: {e:#}"));
                }
                return;
            }
        };
        for state in self.hosts.values_mut().filter(|s| s.alive()) {
            let spec = Join::for_host(self.inventory, &state.host).and_then(|join| {
                InstallSpec::new(self.inventory, &state.host, join, &version, &renderer)
            });
            let spec = match spec {
                Ok(spec) => spec,
                Err(e) => {
                    state.fail(e.to_string());
                    continue;
                }
            };
            let facts = state.facts.as_ref().expect("alive hosts have facts");
            match decide(&state.host, facts, &spec, &version) {
                Ok(_) if facts.pi_memory_cgroup_stuck() => {
                    let file = facts.cmdline_file.as_deref().unwrap_or("cmdline.txt");
                    state.fail(crate::phases::pi_memory::still_off_reason(file));
                }
                Ok(mut decision) => {
                    if facts.pi_needs_cgroup() {
                        decision.why = format!(
                            "enable the memory cgroup in {} and reboot; {}",
                            facts.cmdline_file.as_deref().unwrap_or("cmdline.txt"),
                            decision.why
                        );
                    }
                    state.decision = Some(decision);
                }
                Err(reason) => state.fail(reason),
            }
            state.spec = Some(spec);
        }
    }

    // ---- install phases ------------------------------------------------------------------------

    /// Install / reconfigure / restart one host as decided. Returns the reason on failure.
    async fn apply(&self, name: &str, token: Option<&JoinToken>) -> Result<(), String> {
        let state = &self.hosts[name];
        let spec = state.spec.as_ref().expect("decided hosts have a spec");
        match state.action() {
            Action::Nothing => Ok(()),
            Action::Restart => {
                let script = remote::restart_script(remote::unit_name(spec));
                let request = ExecRequest::new(join::watched(self.inventory, spec, &script))
                    .sudo(true)
                    .timeout(join::install_timeout(self.inventory, &state.host));
                self.watched_step(name, "restart", request).await
            }
            action @ (Action::Install | Action::Reconfigure | Action::Upgrade) => {
                // Upgrade and reconfigure end with the service restarted, also when the
                // installer found the binary already in place (a failed earlier upgrade).
                let script = match action {
                    Action::Install => remote::install_bundle(spec, false),
                    _ => super::upgrade::upgrade_script(spec),
                };
                let request = ExecRequest::new(join::watched(self.inventory, spec, &script))
                    .sudo(true)
                    .stdin(remote::install_stdin(token, spec))
                    .timeout(join::install_timeout(self.inventory, &state.host));
                self.watched_step(name, action.step_word(), request).await
            }
        }
    }

    /// [`Self::step`] for a script under the join watch (`join::watched`): when the watch
    /// stopped the service, the reason k3s logged and what to do.
    async fn watched_step(
        &self,
        name: &str,
        title: &str,
        request: ExecRequest,
    ) -> Result<(), String> {
        let out = self.exec_logged(name, title, &request, false).await?;
        let state = &self.hosts[name];
        let spec = state.spec.as_ref().expect("decided hosts have a spec");
        if let Some(reason) = join::stopped_reason(self.inventory, &state.host, spec, &out) {
            return Err(self.log.redactor().redact(&reason));
        }
        self.exit_checked(title, out, false).map(drop)
    }

    async fn apply_with_progress(
        &self,
        phase: &str,
        name: &str,
        token: Option<&JoinToken>,
    ) -> Result<(), String> {
        self.observer
            .event(&Progress::HostStart { phase, host: name });
        let result = self.apply(name, token).await;
        let detail = match &result {
            Ok(()) => self.hosts[name].action().done_word().to_owned(),
            Err(reason) => reason.clone(),
        };
        self.observer.event(&Progress::HostDone {
            phase,
            host: name,
            ok: result.is_ok(),
            detail: &detail,
        });
        result
    }

    /// Skip every host still waiting, because `why`.
    fn skip_rest(&mut self, why: &str) {
        for state in self.hosts.values_mut() {
            state.skip(why);
        }
    }

    /// A first server that is unreachable or refused stops everything else, with one message
    /// saying so and the reason on every skipped host.
    fn first_server_alive(&mut self) -> bool {
        let first = self.first.clone();
        let state = &self.hosts[&first];
        if state.alive() {
            return true;
        }
        let why = format!(
            "first server {first} failed ({}): nothing that depends on it was attempted",
            state.reason.as_deref().unwrap_or("unknown reason")
        );
        self.message(format!(
            "first server {first} failed: skipping the other servers, agents, kubeconfig and verify"
        ));
        self.skip_rest(&why);
        false
    }

    async fn first_server(&mut self) -> bool {
        let first = self.first.clone();
        if !self.first_server_alive() {
            return false;
        }
        let state = &self.hosts[&first];
        if !state.action().changes() {
            return true;
        }
        // The first server gets the inventory's token, or a fresh one on a first install (k3s
        // would make one up, but then it is never in a file we control).
        let token = match (&self.options.token, state.action()) {
            (Some(token), _) => Some(token.clone()),
            (None, Action::Install) => match JoinToken::generate() {
                Ok(t) => Some(t),
                Err(e) => {
                    self.state_mut(&first).fail(e.to_string());
                    self.skip_rest("no join token");
                    return false;
                }
            },
            (None, _) => None,
        };
        if let Some(token) = &token {
            self.log.redactor().add(token.expose());
        }
        self.observer.event(&Progress::PhaseStart {
            phase: "first server",
            hosts: 1,
        });
        let mut result = self.apply_first_with_api(token.as_ref()).await;
        if result.is_ok() && self.hosts[&first].action() == Action::Upgrade {
            result = self.wait_upgraded(&first).await;
        }
        self.observer.event(&Progress::PhaseEnd {
            phase: "first server",
        });
        match result {
            Ok(()) => true,
            Err(reason) => {
                self.state_mut(&first).fail(reason.clone());
                self.message(format!(
                    "first server {first} failed: skipping the other servers, agents, kubeconfig and verify"
                ));
                self.skip_rest(&format!(
                    "first server {first} failed ({reason}): nothing that depends on it was attempted"
                ));
                false
            }
        }
    }

    /// Whether the GitLab phase will run commands on the first server after verify (so the
    /// lock must be held until it is done).
    fn gitlab_follows(&self) -> bool {
        self.options.mode == Mode::Up
            && self.inventory.gitlab.is_some()
            && self.options.gitlab.is_some()
    }

    /// The API read: wait for the first server's API; read the join token (when a joiner must
    /// install and the inventory has none) and the kubeconfig (when wanted). When no other host
    /// has anything to do, it also reads the node list for verify's first look and (without a
    /// GitLab phase after verify) releases the lock: nothing changes on any host after it.
    fn api_plan(&self) -> ApiPlan {
        let first = &self.first;
        let joiner_installs = self
            .hosts
            .values()
            .any(|s| s.alive() && s.host.name != *first && s.action() == Action::Install);
        let joiner_changes = self
            .hosts
            .values()
            .any(|s| s.alive() && s.host.name != *first && s.action().changes());
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

    /// Install / reconfigure / restart the first server and read from its API in the same exec
    /// (`fold::then_api`): the API answer is kept for `read_from_api`. The install's own output
    /// is logged; the API part holds secrets and is not.
    async fn apply_first_with_api(&mut self, token: Option<&JoinToken>) -> Result<(), String> {
        let first = self.first.clone();
        let state = &self.hosts[&first];
        let spec = state.spec.as_ref().expect("decided hosts have a spec");
        let action = state.action();
        let (title, mut request) = match action {
            Action::Nothing => return Ok(()),
            Action::Restart => (
                "restart",
                ExecRequest::new(join::watched(
                    self.inventory,
                    spec,
                    &remote::restart_script(remote::unit_name(spec)),
                )),
            ),
            Action::Install | Action::Reconfigure | Action::Upgrade => {
                // As in `apply`: upgrade and reconfigure end with the service restarted, also
                // when the installer found the binary already in place.
                let script = match action {
                    Action::Install => remote::install_bundle(spec, false),
                    _ => super::upgrade::upgrade_script(spec),
                };
                (
                    action.step_word(),
                    ExecRequest::new(join::watched(self.inventory, spec, &script))
                        .stdin(remote::install_stdin(token, spec)),
                )
            }
        };
        let api = self.api_plan();
        request.command = fold::then_api(&request.command, &api.script);
        let request = request
            .sudo(true)
            .timeout(join::install_timeout(self.inventory, &state.host) + API_WAIT);
        self.observer.event(&Progress::HostStart {
            phase: "first server",
            host: &first,
        });
        let full_title = format!("{title}, then wait for the API");
        let result = match self
            .exec_releasing(&first, &full_title, request, true, api.release)
            .await
        {
            Err(reason) => Err(reason),
            Ok(out) => {
                let stdout = out.stdout_lossy();
                let (own, api_text) = fold::split_api(&stdout);
                self.log.write(
                    &first,
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
                        let state = &self.hosts[&first];
                        let spec = state.spec.as_ref().expect("decided hosts have a spec");
                        if let Some(reason) =
                            join::stopped_reason(self.inventory, &state.host, spec, &own_out)
                        {
                            Err(self.log.redactor().redact(&reason))
                        } else {
                            match self.exit_checked(title, own_out, false) {
                                Ok(_) => {
                                    Err(format!("{title}: the script ended before the API read"))
                                }
                                Err(reason) => Err(reason),
                            }
                        }
                    }
                    Some(api_text) => {
                        let api_text = api_text.to_owned();
                        self.api_answer =
                            Some(self.exit_checked(API_TITLE, out, true).map(|_| api_text));
                        Ok(())
                    }
                }
            }
        };
        let detail = match &result {
            Ok(()) => action.done_word().to_owned(),
            Err(reason) => reason.clone(),
        };
        self.observer.event(&Progress::HostDone {
            phase: "first server",
            host: &first,
            ok: result.is_ok(),
            detail: &detail,
        });
        result
    }

    /// Wait for the first server's API and read from it (see [`Self::api_plan`]); unless the
    /// first server's install already did.
    async fn read_from_api(&mut self) -> Option<(Option<JoinToken>, Option<String>)> {
        let first = self.first.clone();
        let result = match self.api_answer.take() {
            // Already read in the first server's install exec.
            Some(answer) => answer,
            None => {
                let api = self.api_plan();
                let request = ExecRequest::new(api.script)
                    .sudo(true)
                    .timeout(API_WAIT + join::STOP_GRACE);
                self.observer.event(&Progress::PhaseStart {
                    phase: "api",
                    hosts: 1,
                });
                let result = if api.release {
                    self.step_releasing(&first, API_TITLE, request, true).await
                } else {
                    self.step(&first, API_TITLE, request, true).await
                };
                self.observer.event(&Progress::PhaseEnd { phase: "api" });
                result.map(|out| out.stdout_lossy())
            }
        };
        let stdout = match result {
            Ok(stdout) => stdout,
            Err(reason) => {
                self.state_mut(&first).fail(reason.clone());
                self.message(format!(
                    "first server {first}: its API did not come up: skipping the other servers, agents, kubeconfig and verify"
                ));
                self.skip_rest(&format!(
                    "first server {first}'s API did not come up ({reason}): nothing that depends on it was attempted"
                ));
                return None;
            }
        };
        let (api_text, nodes_text) = fold::split_nodes(&stdout);
        if let Some(nodes_text) = nodes_text {
            self.log
                .write(&first, "nodes (read with the API)", nodes_text);
            self.prefetched_nodes = Some(nodes_text.to_owned());
        }
        let (token_text, kubeconfig) = remote::parse_api_output(api_text);
        let token = match (&self.options.token, token_text) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(text)) => match JoinToken::parse(&text) {
                Ok(token) => {
                    self.log.redactor().add(token.expose());
                    Some(token)
                }
                Err(e) => {
                    let reason = format!("the node-token on {first} is unusable: {e}");
                    self.skip_rest(&reason);
                    return None;
                }
            },
            (None, None) => None,
        };
        Some((token, kubeconfig))
    }

    async fn other_servers(&mut self, token: Option<&JoinToken>) {
        let servers: Vec<String> = self
            .order
            .iter()
            .filter(|n| **n != self.first)
            .filter(|n| {
                let s = &self.hosts[*n];
                s.alive() && s.host.role == Role::Server && s.action().changes()
            })
            .cloned()
            .collect();
        if servers.is_empty() {
            return;
        }
        self.observer.event(&Progress::PhaseStart {
            phase: "servers",
            hosts: servers.len(),
        });
        // One at a time: etcd must keep quorum while members join.
        let mut failed: Option<String> = None;
        for name in servers {
            if let Some(prev) = &failed {
                self.state_mut(&name).skip(format!(
                    "server {prev} failed to join; servers join one at a time, so this one waited"
                ));
                continue;
            }
            let mut result = self.apply_with_progress("servers", &name, token).await;
            if result.is_ok() && self.hosts[&name].action() == Action::Upgrade {
                // An upgraded server is Ready at the new version before the next one goes.
                result = self.wait_upgraded(&name).await;
            }
            if let Err(reason) = result {
                self.state_mut(&name).fail(reason);
                failed = Some(name);
            }
        }
        self.observer
            .event(&Progress::PhaseEnd { phase: "servers" });
    }

    /// Wait (through the first server) until `name`'s node is Ready at the pinned version.
    async fn wait_upgraded(&self, name: &str) -> Result<(), String> {
        let (Some(session), Some(version)) = (self.fleet.session(&self.first), &self.version)
        else {
            return Ok(());
        };
        let node = &self.hosts[name].host.node_name;
        super::upgrade::wait_node_version(session, node, version, self.options.ready_timeout).await
    }

    async fn agents(&mut self, token: Option<&JoinToken>) {
        let agents: Vec<String> = self
            .order
            .iter()
            .filter(|n| {
                let s = &self.hosts[*n];
                s.alive() && s.host.role == Role::Agent && s.action().changes()
            })
            .cloned()
            .collect();
        if agents.is_empty() {
            return;
        }
        self.observer.event(&Progress::PhaseStart {
            phase: "agents",
            hosts: agents.len(),
        });
        let this = &*self;
        let results: Vec<(String, Result<(), String>)> = futures::stream::iter(agents)
            .map(|name| async move {
                let result = this.apply_with_progress("agents", &name, token).await;
                (name, result)
            })
            .buffer_unordered(self.options.fleet.concurrency.max(1))
            .collect()
            .await;
        self.observer.event(&Progress::PhaseEnd { phase: "agents" });
        for (name, result) in results {
            if let Err(reason) = result {
                self.state_mut(&name).fail(reason);
            }
        }
    }

    // ---- kubeconfig and verify -------------------------------------------------------------

    fn merge_kubeconfig(&mut self, text: &str) {
        let Some(target) = self.options.kubeconfig.clone() else {
            return;
        };
        match merge_kubeconfig(self.inventory, &self.first, text, &target) {
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

    // ---- report ------------------------------------------------------------------------------

    fn report(mut self) -> RunReport {
        let busy = std::mem::take(&mut *self.busy.lock().unwrap_or_else(|e| e.into_inner()));
        let pinned = self.version.as_ref().map(|v| v.to_string());
        let hosts = self
            .order
            .iter()
            .map(|name| {
                let state = self
                    .hosts
                    .remove(name)
                    .expect("every ordered host has a state");
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
                HostReport {
                    host: name.clone(),
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
                    reason: state.reason.clone(),
                    warnings: state.warnings.clone(),
                    seconds: busy.get(name).map_or(0.0, |b| b.time.as_secs_f64()),
                    commands: busy.get(name).map_or(0, |b| b.commands),
                    log: self.log.host_file(name).map(|p| p.display().to_string()),
                    facts: None,
                }
            })
            .collect();
        RunReport {
            cluster: self.inventory.cluster.name.clone(),
            version: pinned,
            version_source: self.version_source.clone(),
            dry_run: self.options.mode == Mode::Plan,
            hosts,
            nodes: self.nodes,
            kubeconfig: self.kubeconfig_written,
            kubeconfig_error: self.kubeconfig_error,
            log_dir: self.log.dir().map(|d| d.display().to_string()),
            messages: self.messages,
            gitlab: self.gitlab.or_else(|| {
                // `up` with `[gitlab]` that stopped before the phase: say so, and fail the run.
                (self.options.mode == Mode::Up && self.options.gitlab.is_some())
                    .then(|| GitLabReport::skipped("the cluster did not come up"))
            }),
            phases: std::mem::take(
                &mut *self.observer.done.lock().unwrap_or_else(|e| e.into_inner()),
            ),
        }
    }
}

/// Which half of the GitLab phase a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GitLabStep {
    Up,
    Plan,
    Status,
}

/// What the API read runs, and whether it carries the lock's release.
struct ApiPlan {
    script: String,
    release: bool,
}

/// The first server's facts exec when it carries more (the lock on `up`, the node list on
/// `status`): run with sudo; its whole output is kept for the caller.
struct FirstFacts {
    host: String,
    script: String,
    /// The script is `fold::facts_with_lock` (else `fold::facts_with_nodes`).
    with_lock: bool,
    /// `Err`: the exec did not come back (connection, timeout, Ctrl-C).
    reply: Mutex<Option<Result<ExecOutput, ()>>>,
}
