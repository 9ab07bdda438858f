//! `reset`: uninstall k3s and edgeops's files from the selected hosts, agents first (all at
//! once), then the other servers one at a time, the first server last; then remove the cluster
//! from the user's kubeconfig. Two halves, so the CLI can ask in between: [`Reset::survey`]
//! (connect, take the `up` lock, one survey round trip per host) and [`Reset::execute`].
//!
//! Scope: with the first server selected, `reset` wipes the cluster, and then every host of the
//! inventory must be selected (a first server reset under agents that stay would leave them
//! orphaned). Without it, `reset` removes hosts from a cluster that stays: their Node objects
//! are deleted through the first server after their uninstall, so a re-flashed board rejoins
//! under the same name, and the kubeconfig is left alone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;

use crate::fleet::{Fleet, FleetSettings};
use crate::inventory::{Host, Inventory, Role};
use crate::k3s::install::first_server;
use crate::k3s::kubeconfig::{Kubeconfig, write_private_atomic};
use crate::ssh::{ConnectOptions, ExecOutput, ExecRequest, SshContext};

use super::gitlab::GitLabReport;
use super::outcome::{Busy, Status, last_lines, record};
use super::remote;
pub use super::reset_gitlab::GitLabReset;
pub use super::reset_outcome::{HostPlan, ResetHost, ResetReport, Scope};
use super::reset_remote::{self as scripts, Survey, UninstallOutput};
use super::{Observer, Progress};
use crate::engine::runlog::RunLog;

#[path = "reset_quorum.rs"]
mod quorum;

/// The uninstall kills containers and removes image stores: give it room on a slow board.
const UNINSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Deleting the reset hosts' Node objects through the first server.
const DELETE_NODES_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a reset was refused before anything changed.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(
        "--limit selects the first server {first} but not {}: resetting the first server wipes the \
         cluster, which would orphan them; reset every host (no --limit), or leave {first} out to \
         remove only the selected hosts from the cluster",
        outside.join(", ")
    )]
    FirstServerWithoutTheRest { first: String, outside: Vec<String> },
    #[error(transparent)]
    Locked(super::lock::LockHeld),
}

/// Decide the scope of a reset of `selected` (names), or refuse (see the module doc).
pub fn scope(inventory: &Inventory, selected: &[String]) -> Result<Scope, ResetError> {
    let first = first_server(inventory)
        .map(|h| h.name.clone())
        .unwrap_or_default();
    if !selected.contains(&first) {
        return Ok(Scope::Hosts);
    }
    let outside: Vec<String> = inventory
        .hosts
        .iter()
        .filter(|h| !selected.contains(&h.name))
        .map(|h| h.name.clone())
        .collect();
    if outside.is_empty() {
        Ok(Scope::Cluster)
    } else {
        Err(ResetError::FirstServerWithoutTheRest { first, outside })
    }
}

/// Where `up` merged the cluster's kubeconfig, and the context name.
#[derive(Debug, Clone)]
pub struct KubeconfigEntry {
    pub path: PathBuf,
    pub context: String,
}

#[derive(Debug, Clone)]
pub struct ResetOptions {
    pub fleet: FleetSettings,
    /// A lock older than this is taken over.
    pub lock_stale_after: Duration,
    /// The user's kubeconfig and the cluster's context in it.
    pub kubeconfig: KubeconfigEntry,
    /// `--gitlab` (scope `Cluster` only): what to remove from GitLab once the first server is
    /// reset.
    pub gitlab: Option<GitLabReset>,
}

/// A reset between its survey and its execution: sessions open, the lock held.
pub struct Reset {
    cluster: String,
    scope: Scope,
    first: String,
    fleet: Fleet,
    log: RunLog,
    options: ResetOptions,
    observer: Arc<dyn Observer>,
    run_id: String,
    locked: bool,
    /// The first server, when it is not being reset (scope `Hosts`): where Node objects go.
    first_found: Option<Survey>,
    plans: Vec<HostPlan>,
    /// Node names of the selected hosts.
    node_names: HashMap<String, String>,
    busy: Mutex<HashMap<String, Busy>>,
    messages: Vec<String>,
}

impl Reset {
    /// Connect to the selected hosts (and the first server, for the lock), take the `up` lock,
    /// and survey every selected host in one round trip each. `selected`: names in inventory
    /// order. Fails with [`ResetError::Locked`] when another run holds the lock.
    #[allow(clippy::too_many_arguments)]
    pub async fn survey(
        inventory: &Inventory,
        scope: Scope,
        selected: &[String],
        hosts: Vec<Host>,
        targets: Vec<ConnectOptions>,
        ctx: SshContext,
        options: ResetOptions,
        observer: Arc<dyn Observer>,
        log: RunLog,
    ) -> anyhow::Result<Reset> {
        let first = first_server(inventory)?.name.clone();
        let fleet = Fleet::connect_all(
            targets,
            ctx,
            options.fleet.clone(),
            Arc::new(crate::engine::FleetEvents(observer.clone())),
        )
        .await;
        let run_id = super::lock::new_run_id();
        let mut reset = Reset {
            cluster: inventory.cluster.name.clone(),
            scope,
            first: first.clone(),
            fleet,
            log,
            options,
            observer,
            run_id,
            locked: false,
            first_found: None,
            plans: Vec::new(),
            node_names: hosts
                .iter()
                .map(|h| (h.name.clone(), h.node_name.clone()))
                .collect(),
            busy: Mutex::new(HashMap::new()),
            messages: Vec::new(),
        };
        if let Err(e) = reset.lock().await {
            reset.fleet.close_all().await;
            return Err(e);
        }

        // Survey every connected host, the first server too (scope Hosts: does it run k3s?).
        let script = scripts::survey_script();
        let log = &reset.log;
        let busy = &reset.busy;
        let results = reset
            .fleet
            .run("survey", |session| {
                let script = script.clone();
                async move {
                    let started = Instant::now();
                    let out = session.exec(&ExecRequest::new(script).sudo(true)).await?;
                    record(busy, session.name(), started);
                    let stdout = out.stdout_lossy();
                    log.write(
                        session.name(),
                        &format!("survey: {}", out.exit),
                        &format!(
                            "--- stdout\n{stdout}--- stderr\n{}",
                            String::from_utf8_lossy(&out.stderr)
                        ),
                    );
                    if !out.success() {
                        return Err(anyhow::anyhow!(
                            "survey failed ({}): {}",
                            out.exit,
                            last_lines(&String::from_utf8_lossy(&out.stderr), 3)
                        )
                        .into());
                    }
                    Ok(Survey::parse(&stdout))
                }
            })
            .await;
        let mut found: HashMap<String, Result<Survey, String>> = results
            .into_iter()
            .map(|r| (r.host, r.outcome.map_err(|e| e.to_string())))
            .collect();
        if scope == Scope::Hosts {
            match found.get(&first) {
                Some(Ok(survey)) => reset.first_found = Some(survey.clone()),
                Some(Err(e)) => reset.message(format!(
                    "first server {first}: {e}; the Node objects of the reset hosts cannot be \
                     deleted from the cluster (do it with `kubectl delete node`)"
                )),
                None => {}
            }
        }
        // Execution order: agents, other servers, the first server.
        let by_name: HashMap<&str, &Host> = hosts.iter().map(|h| (h.name.as_str(), h)).collect();
        let selected_hosts: Vec<&Host> = selected
            .iter()
            .filter_map(|n| by_name.get(n.as_str()).copied())
            .collect();
        let ordered = selected_hosts
            .iter()
            .filter(|h| h.role == Role::Agent)
            .map(|h| (*h, "agents"))
            .chain(
                selected_hosts
                    .iter()
                    .filter(|h| h.role == Role::Server && h.name != first)
                    .map(|h| (*h, "servers")),
            )
            .chain(
                selected_hosts
                    .iter()
                    .filter(|h| h.name == first)
                    .map(|h| (*h, "first server")),
            );
        for (host, phase) in ordered {
            let (found, error) = match found.remove(&host.name) {
                Some(Ok(survey)) => (Some(survey), None),
                Some(Err(e)) => (None, Some(e)),
                None => (None, Some("no SSH session".to_owned())),
            };
            reset.plans.push(HostPlan {
                host: host.name.clone(),
                role: host.role.as_str(),
                phase,
                found,
                error,
            });
        }
        Ok(reset)
    }

    /// Per selected host, in execution order: what was found (or why the survey failed).
    pub fn plan(&self) -> &[HostPlan] {
        &self.plans
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Whether the cluster's context is in the user's kubeconfig (scope `Cluster` only: a
    /// partial reset leaves the kubeconfig alone).
    pub fn kubeconfig_to_remove(&self) -> anyhow::Result<Option<&KubeconfigEntry>> {
        if self.scope != Scope::Cluster {
            return Ok(None);
        }
        let entry = &self.options.kubeconfig;
        let Some(config) = read_kubeconfig(&entry.path)? else {
            return Ok(None);
        };
        let mut copy = config;
        Ok(copy.remove(&entry.context).then_some(entry))
    }

    /// What `--gitlab` will remove from GitLab, when asked for.
    pub fn gitlab(&self) -> Option<&GitLabReset> {
        self.options.gitlab.as_ref()
    }

    /// Nothing to uninstall on any reachable selected host, no kubeconfig entry, and no
    /// `--gitlab` (which may always have something to remove).
    pub fn nothing_to_do(&self) -> bool {
        self.options.gitlab.is_none()
            && self
                .plans
                .iter()
                .all(|p| p.found.as_ref().is_none_or(Survey::is_clean))
            && self.kubeconfig_to_remove().ok().flatten().is_none()
    }

    /// Stop here: release the lock and close the sessions; nothing was changed.
    pub async fn abort(mut self) {
        self.release_lock().await;
        self.fleet.close_all().await;
    }

    /// Uninstall, in order; delete Node objects (scope `Hosts`) or the kubeconfig entry (scope
    /// `Cluster`); release the lock.
    pub async fn execute(mut self) -> ResetReport {
        let mut outcomes: HashMap<String, Outcome> = HashMap::new();
        for plan in &self.plans {
            if let Some(error) = &plan.error {
                outcomes.insert(plan.host.clone(), Outcome::failed(error.clone()));
            } else if plan.found.as_ref().is_some_and(Survey::is_clean) {
                outcomes.insert(plan.host.clone(), Outcome::clean());
            }
        }
        let todo = |phase: &str, outcomes: &HashMap<String, Outcome>| -> Vec<String> {
            self.plans
                .iter()
                .filter(|p| p.phase == phase && !outcomes.contains_key(&p.host))
                .map(|p| p.host.clone())
                .collect()
        };

        // Servers leaving a cluster that stays: its etcd must keep quorum at every step, so
        // check the whole sequence before anything changes.
        let leaving: Vec<String> = if self.scope == Scope::Hosts {
            todo("servers", &outcomes)
        } else {
            Vec::new()
        };
        if !leaving.is_empty() {
            let nodes: Vec<String> = leaving
                .iter()
                .filter_map(|h| self.node_names.get(h).cloned())
                .collect();
            if let Err(reason) = self.check_servers_may_leave(&nodes).await {
                self.observer.event(&Progress::Message {
                    text: &format!("reset refused: {reason}"),
                });
                for plan in &self.plans {
                    outcomes
                        .entry(plan.host.clone())
                        .or_insert_with(|| Outcome::failed(format!("refused: {reason}")));
                }
            }
        }
        // Agents all at once (a sliding window of --concurrency).
        let agents = todo("agents", &outcomes);
        if !agents.is_empty() {
            self.phase_start("agents", agents.len());
            let this = &self;
            let results: Vec<(String, Outcome)> = futures::stream::iter(agents)
                .map(|name| async move {
                    let outcome = this.uninstall_with_progress("agents", &name).await;
                    (name, outcome)
                })
                .buffer_unordered(self.options.fleet.concurrency.max(1))
                .collect()
                .await;
            self.phase_end("agents");
            outcomes.extend(results);
        }
        // Other servers one at a time (etcd keeps quorum while members leave), then the first.
        for phase in ["servers", "first server"] {
            let servers = todo(phase, &outcomes);
            if servers.is_empty() {
                continue;
            }
            self.phase_start(phase, servers.len());
            let mut stopped: Option<String> = None;
            for name in servers {
                if let Some(why) = &stopped {
                    outcomes.insert(name, Outcome::failed(why.clone()));
                    continue;
                }
                if phase == "servers" && self.scope == Scope::Hosts {
                    // Member removal before the uninstall, quorum checked again first.
                    let node = self.node_names.get(&name).cloned().unwrap_or(name.clone());
                    if let Err(reason) = self.leave_etcd(&name, &node).await {
                        let reason = format!("not reset: {reason}");
                        stopped = Some(format!(
                            "not reset: the server before it ({name}) could not leave etcd"
                        ));
                        outcomes.insert(name, Outcome::failed(reason));
                        continue;
                    }
                }
                let outcome = self.uninstall_with_progress(phase, &name).await;
                outcomes.insert(name, outcome);
            }
            self.phase_end(phase);
        }

        let mut failed = false;
        let mut kubeconfig = None;
        let mut gitlab = None;
        match self.scope {
            Scope::Hosts => self.delete_nodes(&outcomes).await,
            Scope::Cluster => {
                let first_ok = outcomes
                    .get(&self.first)
                    .is_some_and(|o| o.status != Status::Failed);
                if first_ok {
                    match remove_kubeconfig(&self.options.kubeconfig) {
                        Ok(text) => kubeconfig = Some(text),
                        Err(e) => {
                            failed = true;
                            self.message(format!("kubeconfig: {e:#}"));
                        }
                    }
                } else {
                    self.message(format!(
                        "first server {} was not reset: context {} left in {}",
                        self.first,
                        self.options.kubeconfig.context,
                        self.options.kubeconfig.path.display()
                    ));
                }
                // Under the lock still, so no `up` registers again while this removes.
                if let Some(setup) = &self.options.gitlab {
                    gitlab = Some(if first_ok {
                        self.observer.event(&Progress::Message {
                            text: "gitlab: removing the cluster's runner, agent and agent config",
                        });
                        super::reset_gitlab::run(setup).await
                    } else {
                        GitLabReport::skipped(format!(
                            "first server {} was not reset: the cluster's agent and runner are                              left in GitLab; re-run `reset --gitlab` once it is",
                            self.first
                        ))
                    });
                }
            }
        }
        self.release_lock().await;
        self.fleet.close_all().await;
        let mut report = self.report(outcomes, kubeconfig, failed);
        report.gitlab = gitlab;
        report
    }

    // ---- steps ---------------------------------------------------------------------------

    fn message(&mut self, text: String) {
        self.observer.event(&Progress::Message { text: &text });
        self.messages.push(text);
    }

    fn phase_start(&self, phase: &str, hosts: usize) {
        self.observer.event(&Progress::PhaseStart { phase, hosts });
    }

    fn phase_end(&self, phase: &str) {
        self.observer.event(&Progress::PhaseEnd { phase });
    }

    /// Run one request on `host`, logging the command and its output; a non-zero exit is an
    /// `Err` with the output (the scripts' answers are on stdout either way).
    async fn step(
        &self,
        host: &str,
        title: &str,
        request: ExecRequest,
    ) -> Result<ExecOutput, (String, Option<ExecOutput>)> {
        let Some(session) = self.fleet.session(host) else {
            return Err(("no SSH session".to_owned(), None));
        };
        let started = Instant::now();
        self.log
            .write(host, &format!("{title}: command"), &request.command);
        let result = session.exec(&request).await;
        record(&self.busy, host, started);
        let redactor = self.log.redactor();
        match result {
            Err(e) => {
                let reason = redactor.redact(&format!("{title}: {e}"));
                self.log.write(host, &format!("{title}: error"), &reason);
                Err((reason, None))
            }
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                self.log.write(
                    host,
                    &format!("{title}: {}", out.exit),
                    &format!("--- stdout\n{}--- stderr\n{stderr}", out.stdout_lossy()),
                );
                if out.success() {
                    Ok(out)
                } else {
                    let reason = redactor.redact(&format!(
                        "{title} failed ({}): {}",
                        out.exit,
                        last_lines(&stderr, 3)
                    ));
                    Err((reason, Some(out)))
                }
            }
        }
    }

    async fn uninstall_with_progress(&self, phase: &str, name: &str) -> Outcome {
        self.observer
            .event(&Progress::HostStart { phase, host: name });
        let outcome = self.uninstall(name).await;
        let detail = match &outcome.reason {
            Some(reason) => reason.clone(),
            None => format!("reset ({})", outcome.method.clone().unwrap_or_default()),
        };
        self.observer.event(&Progress::HostDone {
            phase,
            host: name,
            ok: outcome.status != Status::Failed,
            detail: &detail,
        });
        outcome
    }

    async fn uninstall(&self, name: &str) -> Outcome {
        let request = ExecRequest::new(scripts::uninstall_script(&self.run_id))
            .sudo(true)
            .timeout(UNINSTALL_TIMEOUT);
        match self.step(name, "uninstall", request).await {
            Ok(out) => {
                let parsed = UninstallOutput::parse(&out.stdout_lossy());
                Outcome {
                    status: Status::Done,
                    method: Some(parsed.method()),
                    removed: parsed.removed,
                    reason: None,
                }
            }
            Err((reason, out)) => {
                let parsed = out
                    .map(|o| UninstallOutput::parse(&o.stdout_lossy()))
                    .unwrap_or_default();
                let reason = if parsed.remaining.is_empty() {
                    reason
                } else {
                    format!("still present after reset: {}", parsed.remaining.join(", "))
                };
                Outcome {
                    status: Status::Failed,
                    method: Some(parsed.method()).filter(|_| parsed != Default::default()),
                    removed: parsed.removed,
                    reason: Some(reason),
                }
            }
        }
    }

    /// Scope `Hosts`: delete the Node objects of the hosts that are now clean, through the
    /// first server (one round trip). A cluster that cannot be reached is a note, not a host
    /// failure: the hosts themselves are clean.
    async fn delete_nodes(&mut self, outcomes: &HashMap<String, Outcome>) {
        let nodes: Vec<String> = self
            .plans
            .iter()
            .filter(|p| {
                outcomes
                    .get(&p.host)
                    .is_some_and(|o| o.status != Status::Failed)
            })
            .filter_map(|p| self.node_names.get(&p.host).cloned())
            .collect();
        if nodes.is_empty() {
            return;
        }
        let first = self.first.clone();
        let server_runs = self
            .first_found
            .as_ref()
            .is_some_and(|s| s.units.iter().any(|u| u == "k3s"));
        if !server_runs {
            if self.first_found.is_some() {
                self.message(format!(
                    "first server {first} runs no k3s server: no Node objects to delete"
                ));
            }
            return;
        }
        self.phase_start("nodes", 1);
        let request = ExecRequest::new(scripts::delete_nodes_script(&nodes))
            .sudo(true)
            .timeout(DELETE_NODES_TIMEOUT);
        let result = self.step(&first, "delete nodes", request).await;
        self.phase_end("nodes");
        match result {
            Ok(out) => {
                let (deleted, _absent, failed) = scripts::parse_deleted(&out.stdout_lossy());
                if !deleted.is_empty() {
                    self.message(format!(
                        "deleted node(s) {} from the cluster (through {first})",
                        deleted.join(", ")
                    ));
                }
                if !failed.is_empty() {
                    self.message(format!(
                        "could not delete node(s) {} through {first}: see its log; delete them \
                         with `kubectl delete node` before they rejoin",
                        failed.join(", ")
                    ));
                }
            }
            Err((reason, _)) => self.message(format!(
                "could not delete the Node objects of {} through {first}: {reason}",
                nodes.join(", ")
            )),
        }
    }

    // ---- lock ------------------------------------------------------------------------------

    /// The same lock as `up` (a reset must not race an `up`), on the first server when it is
    /// reachable. Unreachable, no `up` can be running against it either; a note says so.
    async fn lock(&mut self) -> anyhow::Result<()> {
        let first = self.first.clone();
        if self.fleet.session(&first).is_none() {
            self.message(format!(
                "first server {first} is unreachable: the up lock was not taken"
            ));
            return Ok(());
        }
        let owner = super::lock::owner(&self.run_id, Some("edgeops reset"));
        let script = remote::lock_acquire_script(&owner, self.options.lock_stale_after);
        let out = self
            .step(&first, "lock", ExecRequest::new(script).sudo(true))
            .await
            .map_err(|(reason, _)| anyhow::anyhow!("{first}: cannot take the up lock: {reason}"))?;
        match remote::parse_lock_answer(&out.stdout_lossy()) {
            Some(answer) => {
                let note = super::lock::settle(
                    answer,
                    &self.cluster,
                    &first,
                    self.options.lock_stale_after,
                )
                .map_err(ResetError::Locked)?;
                self.locked = true;
                if let Some(note) = note {
                    self.message(note);
                }
                Ok(())
            }
            None => anyhow::bail!(
                "{first}: the lock script answered {:?}",
                out.stdout_lossy().trim()
            ),
        }
    }

    async fn release_lock(&mut self) {
        if !self.locked {
            return;
        }
        let first = self.first.clone();
        let request = super::lock::release_request(&self.run_id);
        if let Err((reason, _)) = self.step(&first, "unlock", request).await {
            self.message(format!(
                "{first}: could not release the up lock ({reason}); it expires after {}",
                humantime::format_duration(self.options.lock_stale_after)
            ));
        }
        self.locked = false;
    }

    // ---- report ----------------------------------------------------------------------------

    fn report(
        mut self,
        mut outcomes: HashMap<String, Outcome>,
        kubeconfig: Option<String>,
        failed: bool,
    ) -> ResetReport {
        let busy = std::mem::take(&mut *self.busy.lock().unwrap_or_else(|e| e.into_inner()));
        let hosts = std::mem::take(&mut self.plans)
            .into_iter()
            .map(|plan| {
                let outcome = outcomes
                    .remove(&plan.host)
                    .unwrap_or_else(|| Outcome::failed("not attempted".to_owned()));
                let result = match outcome.status {
                    Status::Done => "reset",
                    Status::Unchanged => "already clean",
                    Status::Skipped => "skipped",
                    _ => "failed",
                };
                ResetHost {
                    installed: plan
                        .found
                        .as_ref()
                        .map_or_else(|| "?".to_owned(), Survey::installed),
                    result: result.to_owned(),
                    status: outcome.status,
                    method: outcome.method,
                    removed: outcome.removed,
                    reason: outcome.reason,
                    seconds: busy.get(&plan.host).map_or(0.0, |b| b.time.as_secs_f64()),
                    commands: busy.get(&plan.host).map_or(0, |b| b.commands),
                    log: self
                        .log
                        .host_file(&plan.host)
                        .map(|p| p.display().to_string()),
                    host: plan.host,
                    role: plan.role,
                    phase: plan.phase,
                    found: plan.found,
                }
            })
            .collect();
        ResetReport {
            cluster: self.cluster.clone(),
            scope: self.scope,
            hosts,
            kubeconfig,
            log_dir: self.log.dir().map(|d| d.display().to_string()),
            messages: std::mem::take(&mut self.messages),
            failed,
            gitlab: None,
        }
    }
}

/// How one host's reset ended.
#[derive(Debug, Clone)]
struct Outcome {
    status: Status,
    method: Option<String>,
    removed: Vec<String>,
    reason: Option<String>,
}

impl Outcome {
    fn clean() -> Outcome {
        Outcome {
            status: Status::Unchanged,
            method: None,
            removed: Vec::new(),
            reason: None,
        }
    }

    fn failed(reason: String) -> Outcome {
        Outcome {
            status: Status::Failed,
            method: None,
            removed: Vec::new(),
            reason: Some(reason),
        }
    }
}

fn read_kubeconfig(path: &std::path::Path) -> anyhow::Result<Option<Kubeconfig>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Kubeconfig::parse(&text, &path.display().to_string())?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Remove the cluster's cluster, context and user from the kubeconfig `up` merged into; other
/// entries stay. A file left with nothing in it (edgeops created it) is deleted. Says what it did.
pub fn remove_kubeconfig(entry: &KubeconfigEntry) -> anyhow::Result<String> {
    let path = entry.path.display();
    let Some(mut config) = read_kubeconfig(&entry.path)? else {
        return Ok(format!(
            "{path}: no such file (context {}, already gone)",
            entry.context
        ));
    };
    if !config.remove(&entry.context) {
        return Ok(format!(
            "{path}: no context {} (already gone)",
            entry.context
        ));
    }
    if config.is_empty() {
        std::fs::remove_file(&entry.path).with_context(|| format!("removing {path}"))?;
        return Ok(format!(
            "{path}: context {} removed, and the file with it (nothing else was in it)",
            entry.context
        ));
    }
    write_private_atomic(&entry.path, config.to_yaml().as_bytes())?;
    Ok(format!(
        "{path}: context {} removed (other contexts kept)",
        entry.context
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        crate::inventory::parse(
            "[cluster]\nname = \"lab\"\n\
             [ssh]\nuser = \"pi\"\n\
             [[hosts]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n\
             [[hosts]]\nname = \"a[1-2]\"\naddress = \"10.0.0.[2-3]\"\nrole = \"agent\"\n",
            std::path::Path::new("lab.toml"),
        )
        .unwrap()
    }

    #[test]
    fn scope_rules() {
        let inv = inventory();
        let all: Vec<String> = ["s1", "a1", "a2"].map(String::from).to_vec();
        assert_eq!(scope(&inv, &all).unwrap(), Scope::Cluster);
        assert_eq!(scope(&inv, &["a2".to_owned()]).unwrap(), Scope::Hosts);
        let err = scope(&inv, &["s1".to_owned(), "a1".to_owned()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--limit selects the first server s1 but not a2"),
            "{err}"
        );
    }

    #[test]
    fn kubeconfig_removal_keeps_other_contexts_and_drops_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let entry = KubeconfigEntry {
            path: path.clone(),
            context: "lab".into(),
        };
        let two = "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://10.0.0.1:6443\n\
                   - name: other\n  cluster:\n    server: https://other:6443\n\
                   contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n\
                   - name: other\n  context:\n    cluster: other\n    user: other\n\
                   users:\n- name: lab\n  user:\n    token: x\n- name: other\n  user:\n    token: y\n\
                   current-context: lab\n";
        std::fs::write(&path, two).unwrap();
        let said = remove_kubeconfig(&entry).unwrap();
        assert!(said.contains("other contexts kept"), "{said}");
        let left = std::fs::read_to_string(&path).unwrap();
        assert!(!left.contains("name: lab"), "{left}");
        assert!(left.contains("name: other"), "{left}");
        assert!(remove_kubeconfig(&entry).unwrap().contains("already gone"));

        let only = "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://10.0.0.1:6443\n\
                    contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n\
                    users:\n- name: lab\n  user:\n    token: x\ncurrent-context: lab\n";
        std::fs::write(&path, only).unwrap();
        let said = remove_kubeconfig(&entry).unwrap();
        assert!(said.contains("and the file with it"), "{said}");
        assert!(!path.exists());
        assert!(remove_kubeconfig(&entry).unwrap().contains("no such file"));
    }
}
