//! `edgeops upgrade`: a rolling k3s upgrade over one fleet. Take the cluster lock `up` takes,
//! gather facts and the node list, resolve the target once, refuse a downgrade unless forced,
//! then node by node (first server, other servers one at a time, agents in batches): optionally
//! cordon + drain, re-run the installer with the target `INSTALL_K3S_VERSION` and the same
//! config `up` renders, wait until the node is Ready at the target, uncordon. A failed server
//! stops the roll; a failed agent does not stop the other agents.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;

use crate::fleet::{Fleet, FleetSettings};
use crate::inventory::{Host, Inventory};
use crate::k3s::airgap as k3s_airgap;
use crate::k3s::install::{InstallSpec, Join, first_server};
use crate::k3s::nodes::{self, ConditionStatus, NodeStatus};
use crate::k3s::{Channel, ChannelResolver, JoinToken, K3sVersion};
use crate::ssh::{ConnectOptions, ExecOutput, ExecRequest, Session, SshContext, shell_quote};

use super::airgap;
use super::facts::{self, Facts};
use super::outcome::{NodeRow, Status, last_lines};
use super::remote;
use super::upgrade_plan::{
    HostNeed, Need, decide_upgrade, downgrades, rolling_order, servers_left_behind,
};
use super::{Observer, Progress};
use crate::engine::runlog::RunLog;

/// kubectl's own `--timeout` for drain is `--drain-timeout`; this is the round trip around it.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// One node-list read while waiting for a node (the API may be restarting).
const NODE_POLL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one channel-server request may take.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between node polls while waiting for a node.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// What to upgrade to, before resolution.
#[derive(Debug, Clone)]
pub enum Target {
    Version(K3sVersion),
    /// Resolved once, at the inventory's `channel_url`.
    Channel(Channel),
}

#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    pub target: Target,
    /// Agents upgraded at once.
    pub batch_size: usize,
    /// Cordon and drain each node first (and uncordon it once upgraded).
    pub drain: bool,
    pub drain_timeout: Duration,
    /// Allow going to an older version.
    pub force: bool,
    /// How long one node may take to be Ready at the target after its install.
    pub ready_timeout: Duration,
    pub lock_stale_after: Duration,
    pub fleet: FleetSettings,
    /// The join token from the inventory, if it names one (written only if it differs).
    pub token: Option<JoinToken>,
    /// Hosts to upgrade (the `--limit` selection). Other hosts of the run (the first server,
    /// always connected for the API) are only used, never changed or reported.
    pub selected: Vec<String>,
}

/// Why an upgrade did not start. Callers branch on these (exit code 2 for a refused downgrade).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(
        "refusing to downgrade to {target}: {} (nothing was changed; pass --force to go to an older version)",
        hosts.iter().map(|(h, v)| format!("{h} runs {v}")).collect::<Vec<_>>().join(", ")
    )]
    Downgrade {
        target: K3sVersion,
        hosts: Vec<(String, K3sVersion)>,
    },
    #[error(transparent)]
    Locked(super::lock::LockHeld),
    #[error(
        "refusing to upgrade to {target} without {}: agents must not run a newer k3s than the servers \
         (upgrade the servers too, or pass --force)",
        servers.iter().map(|(n, v)| format!("server {n} ({v})")).collect::<Vec<_>>().join(", ")
    )]
    ServersBehind {
        target: K3sVersion,
        servers: Vec<(String, K3sVersion)>,
    },
    #[error("{host}: cannot take the cluster lock: {reason}")]
    Lock { host: String, reason: String },
    #[error(
        "refusing to upgrade: restarting server {server} {reason} (nothing was changed; bring the \
         down servers back or take them out with `edgeops reset --limit` first)"
    )]
    Quorum { server: String, reason: String },
    #[error("refusing to upgrade: {0} (nothing was changed)")]
    SkipsMinor(String),
    #[error("resolving k3s channel {channel}: {source}")]
    Resolve {
        channel: Channel,
        #[source]
        source: crate::k3s::ResolveError,
    },
}

/// One host's line in the upgrade report.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeHost {
    pub host: String,
    pub role: &'static str,
    /// The version it ran before (node's kubeletVersion, else the binary's).
    pub from: Option<String>,
    /// The version it runs after the run.
    pub to: Option<String>,
    pub status: Status,
    /// `upgraded`, `already at V`, `failed`, `skipped`.
    pub result: String,
    pub reason: Option<String>,
    /// Time spent in remote steps on this host (its own steps and the kubectl steps for it).
    pub seconds: f64,
    pub log: Option<String>,
}

impl UpgradeHost {
    pub fn is_failure(&self) -> bool {
        matches!(self.status, Status::Failed | Status::Skipped)
    }
}

/// The whole upgrade run.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeReport {
    pub cluster: String,
    /// The resolved target, and where it came from.
    pub target: Option<String>,
    pub target_source: Option<String>,
    pub hosts: Vec<UpgradeHost>,
    /// The node table read at the end.
    pub nodes: Vec<NodeRow>,
    pub messages: Vec<String>,
    pub log_dir: Option<String>,
}

impl UpgradeReport {
    pub fn failed_hosts(&self) -> usize {
        self.hosts.iter().filter(|h| h.is_failure()).count()
    }
}

struct HostState {
    host: Host,
    facts: Option<Facts>,
    need: Option<HostNeed>,
    spec: Option<InstallSpec>,
    status: Option<Status>,
    result: Option<String>,
    reason: Option<String>,
}

impl HostState {
    fn finish(&mut self, status: Status, result: impl Into<String>, reason: Option<String>) {
        if self.status.is_none() {
            self.status = Some(status);
            self.result = Some(result.into());
            self.reason = reason;
        }
    }
}

struct Upgrader<'a> {
    inventory: &'a Inventory,
    fleet: Fleet,
    observer: Arc<dyn Observer>,
    log: RunLog,
    options: UpgradeOptions,
    hosts: BTreeMap<String, HostState>,
    /// Host names in inventory order (selected ones only).
    order: Vec<String>,
    first: String,
    busy: Mutex<HashMap<String, Duration>>,
    messages: Vec<String>,
    target: Option<K3sVersion>,
    target_source: Option<String>,
    nodes: Vec<NodeRow>,
    run_id: String,
    locked: bool,
    /// Air-gapped clusters: the target release, verified on the workstation.
    artifacts: Option<k3s_airgap::Artifacts>,
}

/// Run `edgeops upgrade` over `hosts` (the selection plus the first server).
pub async fn upgrade(
    inventory: &Inventory,
    hosts: Vec<Host>,
    targets: Vec<ConnectOptions>,
    ctx: SshContext,
    options: UpgradeOptions,
    observer: Arc<dyn Observer>,
    log: RunLog,
) -> anyhow::Result<UpgradeReport> {
    let first = first_server(inventory)?.name.clone();
    let fleet = Fleet::connect_all(
        targets,
        ctx,
        options.fleet.clone(),
        Arc::new(crate::engine::FleetEvents(observer.clone())),
    )
    .await;
    let order: Vec<String> = hosts
        .iter()
        .filter(|h| options.selected.contains(&h.name))
        .map(|h| h.name.clone())
        .collect();
    let states = hosts
        .into_iter()
        .map(|host| {
            (
                host.name.clone(),
                HostState {
                    host,
                    facts: None,
                    need: None,
                    spec: None,
                    status: None,
                    result: None,
                    reason: None,
                },
            )
        })
        .collect();
    let mut upgrader = Upgrader {
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
        target: None,
        target_source: None,
        nodes: Vec::new(),
        run_id: super::lock::new_run_id(),
        locked: false,
        artifacts: None,
    };
    let result = upgrader.run().await;
    upgrader.release_lock().await;
    upgrader.fleet.close_all().await;
    result?;
    Ok(upgrader.report())
}

impl Upgrader<'_> {
    fn message(&mut self, text: String) {
        self.observer.event(&Progress::Message { text: &text });
        self.messages.push(text);
    }

    fn state_mut(&mut self, name: &str) -> &mut HostState {
        self.hosts
            .get_mut(name)
            .expect("every host of the run has a state")
    }

    fn node_name(&self, host: &str) -> String {
        self.hosts[host].host.node_name.clone()
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let first = self.first.clone();
        if self.fleet.session(&first).is_none() {
            let why = format!("first server {first} is unreachable: nothing was attempted");
            self.message(why.clone());
            for name in self.order.clone() {
                let status = if name == first {
                    Status::Failed
                } else {
                    Status::Skipped
                };
                self.state_mut(&name)
                    .finish(status, status_word(status), Some(why.clone()));
            }
            return Ok(());
        }
        self.lock().await?;
        self.gather_facts().await;
        let observed = self.read_nodes().await;
        self.resolve().await?;
        let target = self.target.clone().expect("resolved above");
        self.decide(&target, &observed)?;
        self.check_minor_steps(&target).await?;
        self.prepare_airgap(&target).await?;
        self.roll(&target).await;
        if let Some(pinned) = &self.inventory.cluster.version
            && *pinned != target.to_string()
        {
            self.message(format!(
                "the inventory pins version = \"{pinned}\": set it to \"{target}\" so `edgeops up` keeps this version"
            ));
        }
        if let Ok(observed) = self.read_nodes().await {
            self.nodes = observed
                .iter()
                .map(|n| NodeRow::from_status(n, Vec::new()))
                .collect();
        }
        Ok(())
    }

    /// Run one request on `host`, logging it (redacted) to the host's log; a non-zero exit
    /// becomes a reason. `busy_host`: whose time it counts to.
    async fn step(
        &self,
        host: &str,
        busy_host: &str,
        title: &str,
        request: ExecRequest,
    ) -> Result<ExecOutput, String> {
        let session = self
            .fleet
            .session(host)
            .ok_or_else(|| format!("{host}: no SSH session"))?;
        let started = Instant::now();
        self.log
            .write(busy_host, &format!("{title}: command"), &request.command);
        let result = session.exec(&request).await;
        *self
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(busy_host.to_owned())
            .or_default() += started.elapsed();
        let redactor = self.log.redactor();
        let out = result.map_err(|e| redactor.redact(&format!("{title}: {e}")))?;
        let stdout = out.stdout_lossy();
        let stderr = String::from_utf8_lossy(&out.stderr);
        self.log.write(
            busy_host,
            &format!("{title}: {}", out.exit),
            &format!("--- stdout\n{stdout}--- stderr\n{stderr}"),
        );
        if out.success() {
            Ok(out)
        } else if let Some(reason) = self.hosts.get(host).and_then(|state| {
            let spec = state.spec.as_ref()?;
            super::join::stopped_reason(self.inventory, &state.host, spec, &out)
        }) {
            // The join watch stopped the service (see `k3s::join_watch`).
            Err(redactor.redact(&reason))
        } else {
            let tail = if stderr.trim().is_empty() {
                last_lines(&stdout, 3)
            } else {
                last_lines(&stderr, 3)
            };
            Err(redactor.redact(&format!("{title} failed ({}): {tail}", out.exit)))
        }
    }

    // ---- lock (the same file and script as `up`) ----------------------------------------------

    async fn lock(&mut self) -> Result<(), UpgradeError> {
        let owner = super::lock::owner(&self.run_id, Some("upgrade"));
        let first = self.first.clone();
        let script = remote::lock_acquire_script(&owner, self.options.lock_stale_after);
        let out = self
            .step(&first, &first, "lock", ExecRequest::new(script).sudo(true))
            .await
            .map_err(|reason| UpgradeError::Lock {
                host: first.clone(),
                reason,
            })?;
        match remote::parse_lock_answer(&out.stdout_lossy()) {
            Some(answer) => {
                let note = super::lock::settle(
                    answer,
                    &self.inventory.cluster.name,
                    &first,
                    self.options.lock_stale_after,
                )
                .map_err(UpgradeError::Locked)?;
                self.locked = true;
                if let Some(note) = note {
                    self.message(note);
                }
                Ok(())
            }
            None => Err(UpgradeError::Lock {
                host: first,
                reason: format!("the lock script answered {:?}", out.stdout_lossy().trim()),
            }),
        }
    }

    async fn release_lock(&mut self) {
        if !self.locked {
            return;
        }
        let first = self.first.clone();
        let request = super::lock::release_request(&self.run_id);
        if let Err(reason) = self.step(&first, &first, "unlock", request).await {
            self.message(format!(
                "{first}: could not release the lock ({reason}); it expires after {}",
                humantime::format_duration(self.options.lock_stale_after)
            ));
        }
        self.locked = false;
    }

    // ---- facts, nodes, target, decisions --------------------------------------------------------

    async fn gather_facts(&mut self) {
        let script = facts::script();
        let log = &self.log;
        let results = self
            .fleet
            .run("facts", |session| {
                let script = script.clone();
                async move {
                    let request = ExecRequest::new(script).max_output(facts::MAX_OUTPUT);
                    let out = session.exec(&request).await?;
                    facts::bounded(&out)?;
                    let stdout = out.stdout_lossy();
                    log.write(session.name(), "facts", &stdout);
                    Ok(Facts::parse(&stdout))
                }
            })
            .await;
        for result in results {
            let Some(state) = self.hosts.get_mut(&result.host) else {
                continue;
            };
            match result.outcome {
                Ok(facts) => state.facts = Some(facts),
                Err(e) => state.finish(Status::Failed, "failed", Some(e.to_string())),
            }
        }
    }

    /// Servers go up one minor at a time: a target that skips a minor line is refused, naming
    /// the newest release of each line in between (from the channel server). `--force` lets it
    /// through with a note.
    async fn check_minor_steps(&mut self, target: &K3sVersion) -> Result<(), UpgradeError> {
        let behind: Vec<(String, K3sVersion)> = self
            .order
            .iter()
            .filter_map(|n| {
                let state = &self.hosts[n];
                if state.host.role != crate::inventory::Role::Server || state.spec.is_none() {
                    return None;
                }
                let from = state.need.as_ref()?.from.clone()?;
                (!crate::k3s::skew::skipped_minors(&from, target).is_empty())
                    .then(|| (n.clone(), from))
            })
            .collect();
        let Some(oldest) = behind.iter().map(|(_, v)| v.clone()).min() else {
            return Ok(());
        };
        let resolver =
            ChannelResolver::new(CHANNEL_TIMEOUT).map_err(|source| UpgradeError::Resolve {
                channel: oldest.minor_channel(),
                source,
            })?;
        let steps = crate::k3s::skew::intermediate_versions(
            &resolver,
            &self.inventory.cluster.channel_url,
            &oldest,
            target,
        )
        .await
        .map_err(|source| UpgradeError::Resolve {
            channel: oldest.minor_channel(),
            source,
        })?;
        let text = crate::k3s::skew::refusal(&behind, target, &steps);
        if self.options.force {
            self.message(format!("--force: {text}"));
            return Ok(());
        }
        Err(UpgradeError::SkipsMinor(text))
    }

    async fn read_nodes(&self) -> Result<Vec<NodeStatus>, String> {
        let first = &self.first;
        let out = self
            .step(
                first,
                first,
                "nodes",
                ExecRequest::new(remote::NODES_COMMAND).sudo(true),
            )
            .await?;
        nodes::parse_nodes(&out.stdout_lossy()).map_err(|e| format!("nodes: {e}"))
    }

    async fn resolve(&mut self) -> Result<(), UpgradeError> {
        match self.options.target.clone() {
            Target::Version(version) => {
                self.target = Some(version);
                self.target_source = Some("--version".into());
            }
            Target::Channel(channel) => {
                self.observer.event(&Progress::PhaseStart {
                    phase: "resolve",
                    hosts: 0,
                });
                let url = self.inventory.cluster.channel_url.clone();
                let resolved = match ChannelResolver::new(CHANNEL_TIMEOUT) {
                    Ok(resolver) => resolver.resolve(&url, &channel).await,
                    Err(e) => Err(e),
                };
                self.observer
                    .event(&Progress::PhaseEnd { phase: "resolve" });
                let version = resolved.map_err(|source| UpgradeError::Resolve {
                    channel: channel.clone(),
                    source,
                })?;
                self.target = Some(version);
                self.target_source = Some(format!("channel {channel} at {url}"));
            }
        }
        Ok(())
    }

    fn decide(
        &mut self,
        target: &K3sVersion,
        observed: &Result<Vec<NodeStatus>, String>,
    ) -> Result<(), UpgradeError> {
        let node_versions: HashMap<String, K3sVersion> = match observed {
            Ok(list) => list
                .iter()
                .filter_map(|n| Some((n.name.clone(), n.kubelet_version.parse().ok()?)))
                .collect(),
            Err(reason) => {
                let text = format!("cannot list the nodes on {}: {reason}", self.first.clone());
                self.message(text);
                HashMap::new()
            }
        };
        let renderer = crate::render::renderer_for(self.inventory);
        for name in self.order.clone() {
            let inventory = self.inventory;
            let state = self.state_mut(&name);
            let Some(facts) = state.facts.as_ref() else {
                continue;
            };
            let need = decide_upgrade(
                &state.host,
                facts,
                node_versions.get(&state.host.node_name),
                target,
            );
            let spec = match &renderer {
                Ok(renderer) => Join::for_host(inventory, &state.host)
                    .and_then(|join| {
                        InstallSpec::new(inventory, &state.host, join, target, renderer)
                    })
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("templates: {e:#}")),
            };
            match (&need.need, spec) {
                (Need::Refuse(reason), _) => {
                    state.finish(Status::Failed, "failed", Some(reason.clone()))
                }
                (Need::NotInstalled(reason), _) => {
                    state.finish(Status::Skipped, "skipped", Some(reason.clone()))
                }
                (Need::Already, _) => {
                    state.finish(Status::Unchanged, format!("already at {target}"), None)
                }
                (Need::Upgrade, Err(reason)) => {
                    state.finish(Status::Failed, "failed", Some(reason))
                }
                (Need::Upgrade, Ok(spec)) => state.spec = Some(spec),
            }
            state.need = Some(need);
        }
        if let Ok(list) = observed
            && !self.options.force
        {
            let nodes: Vec<(String, K3sVersion, bool)> = list
                .iter()
                .filter_map(|n| {
                    let server = n
                        .roles
                        .iter()
                        .any(|r| r == "control-plane" || r == "master");
                    Some((n.name.clone(), n.kubelet_version.parse().ok()?, server))
                })
                .collect();
            let in_run: Vec<String> = self.order.iter().map(|n| self.node_name(n)).collect();
            let behind = servers_left_behind(&nodes, &in_run, target);
            if !behind.is_empty() {
                return Err(UpgradeError::ServersBehind {
                    target: target.clone(),
                    servers: behind,
                });
            }
        }
        if let Ok(list) = observed {
            // Each server is away while it restarts: the other members must keep quorum.
            let members = crate::k3s::quorum::Members::from_nodes(list);
            for name in &self.order {
                let state = &self.hosts[name];
                if state.host.role != crate::inventory::Role::Server || state.spec.is_none() {
                    continue;
                }
                let node = state.host.node_name.clone();
                if let Err(why) = members.check_removals(std::slice::from_ref(&node)) {
                    let reason = why
                        .strip_prefix(&format!("removing {node} "))
                        .unwrap_or(&why)
                        .to_owned();
                    return Err(UpgradeError::Quorum {
                        server: name.clone(),
                        reason,
                    });
                }
            }
        }
        let needs: Vec<(&str, &HostNeed)> = self
            .order
            .iter()
            .filter_map(|n| Some((n.as_str(), self.hosts[n].need.as_ref()?)))
            .collect();
        let down = downgrades(needs, target);
        if !down.is_empty() {
            if !self.options.force {
                return Err(UpgradeError::Downgrade {
                    target: target.clone(),
                    hosts: down,
                });
            }
            let text = format!(
                "--force: downgrading {} to {target}",
                down.iter()
                    .map(|(h, v)| format!("{h} ({v})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.message(text);
        }
        Ok(())
    }

    /// Air-gapped clusters: fetch and verify the target release once on the workstation, for
    /// the architectures of the hosts to upgrade (a mismatch stops the run before any change).
    async fn prepare_airgap(&mut self, target: &K3sVersion) -> anyhow::Result<()> {
        if !self.inventory.cluster.airgap {
            return Ok(());
        }
        let mut arches = Vec::new();
        for name in self.order.iter().filter(|n| self.pending(n)) {
            if let Some(arch) = self.hosts[name].facts.as_ref().and_then(|f| f.arch)
                && !arches.contains(&arch)
            {
                arches.push(arch);
            }
        }
        if arches.is_empty() {
            return Ok(());
        }
        self.observer.event(&Progress::PhaseStart {
            phase: "artifacts",
            hosts: 0,
        });
        let sources = k3s_airgap::Sources::from_cluster(&self.inventory.cluster)?;
        let artifacts = k3s_airgap::prepare(&sources, target, &arches)
            .await
            .context("air-gap artifacts")?;
        self.observer
            .event(&Progress::PhaseEnd { phase: "artifacts" });
        if !artifacts.downloaded.is_empty() {
            self.message(format!(
                "downloaded {} into {}",
                artifacts.downloaded.join(", "),
                artifacts.origin
            ));
        }
        self.artifacts = Some(artifacts);
        Ok(())
    }

    /// Air-gapped: give `name` the target's files it lacks (checked, then each uploaded and
    /// verified on the host), as `up` does, right before its install.
    async fn deliver(&self, name: &str) -> Result<(), String> {
        let Some(artifacts) = &self.artifacts else {
            return Ok(());
        };
        let list = self.hosts[name]
            .facts
            .as_ref()
            .and_then(|f| f.arch)
            .and_then(|arch| airgap::uploads(artifacts, arch))
            .ok_or_else(|| "air-gap: no k3s binary prepared for this architecture".to_owned())?;
        let check = ExecRequest::new(airgap::check_script(&list)).sudo(true);
        let out = self.step(name, name, "air-gap check", check).await?;
        for upload in airgap::missing(&list, &out.stdout_lossy()) {
            let bytes = tokio::fs::read(&upload.local)
                .await
                .map_err(|e| format!("air-gap: reading {}: {e}", upload.local.display()))?;
            let request = ExecRequest::new(airgap::put_script(upload))
                .sudo(true)
                .stdin(bytes);
            self.step(name, name, &format!("upload {}", upload.remote), request)
                .await?;
        }
        Ok(())
    }

    // ---- the roll ---------------------------------------------------------------------------------

    fn pending(&self, name: &str) -> bool {
        self.hosts
            .get(name)
            .is_some_and(|s| s.status.is_none() && s.spec.is_some())
    }

    async fn roll(&mut self, target: &K3sVersion) {
        let selected: Vec<&Host> = self.order.iter().map(|n| &self.hosts[n].host).collect();
        let (servers, batches) = rolling_order(selected, &self.first, self.options.batch_size);
        let todo = servers.iter().filter(|n| self.pending(n)).count();
        if todo > 0 {
            self.observer.event(&Progress::PhaseStart {
                phase: "servers",
                hosts: todo,
            });
        }
        // A server that failed before the roll (unreachable, refused) counts as the first
        // failed one: the servers after it would upgrade with one member already down.
        let mut failed: Option<String> = None;
        for name in servers {
            if self.hosts[&name].status == Some(Status::Failed) {
                failed.get_or_insert(name);
                continue;
            }
            if !self.pending(&name) {
                continue;
            }
            if let Some(prev) = &failed {
                let why = format!(
                    "server {prev} failed; servers go one at a time, so this one was not attempted"
                );
                self.state_mut(&name)
                    .finish(Status::Skipped, "skipped", Some(why));
                continue;
            }
            let result = self.upgrade_one("servers", &name, target).await;
            if self.record(&name, target, result).is_err() {
                failed = Some(name);
            }
        }
        if todo > 0 {
            self.observer
                .event(&Progress::PhaseEnd { phase: "servers" });
        }
        if let Some(prev) = failed {
            self.message(format!(
                "server {prev} failed: the later servers and all agents were not attempted"
            ));
            let why = format!(
                "server {prev} failed; agents go after every server, so this one was not attempted"
            );
            for name in self.order.clone() {
                if self.pending(&name) {
                    self.state_mut(&name)
                        .finish(Status::Skipped, "skipped", Some(why.clone()));
                }
            }
            return;
        }
        let batches: Vec<Vec<String>> = batches
            .into_iter()
            .map(|b| {
                b.into_iter()
                    .filter(|n| self.pending(n))
                    .collect::<Vec<_>>()
            })
            .filter(|b| !b.is_empty())
            .collect();
        let total: usize = batches.iter().map(Vec::len).sum();
        if total == 0 {
            return;
        }
        self.observer.event(&Progress::PhaseStart {
            phase: "agents",
            hosts: total,
        });
        for batch in batches {
            let this = &*self;
            let results: Vec<(String, Result<(), String>)> = futures::stream::iter(batch)
                .map(|name| async move {
                    let result = this.upgrade_one("agents", &name, target).await;
                    (name, result)
                })
                .buffer_unordered(self.options.batch_size.max(1))
                .collect()
                .await;
            for (name, result) in results {
                let _ = self.record(&name, target, result);
            }
        }
        self.observer.event(&Progress::PhaseEnd { phase: "agents" });
    }

    fn record(
        &mut self,
        name: &str,
        target: &K3sVersion,
        result: Result<(), String>,
    ) -> Result<(), ()> {
        let from = self.hosts[name].need.as_ref().and_then(|n| n.from.clone());
        let state = self.state_mut(name);
        match result {
            Ok(()) => {
                let word = match from {
                    Some(from) if &from > target => "downgraded",
                    _ => "upgraded",
                };
                state.finish(Status::Done, word, None);
                Ok(())
            }
            Err(reason) => {
                state.finish(Status::Failed, "failed", Some(reason));
                Err(())
            }
        }
    }

    /// One node: drain (optional), install at the target, wait Ready at the target, uncordon.
    async fn upgrade_one(
        &self,
        phase: &str,
        name: &str,
        target: &K3sVersion,
    ) -> Result<(), String> {
        self.observer
            .event(&Progress::HostStart { phase, host: name });
        let result = self.upgrade_steps(name, target).await;
        let detail = match &result {
            Ok(()) => format!("upgraded to {target}"),
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

    async fn upgrade_steps(&self, name: &str, target: &K3sVersion) -> Result<(), String> {
        let node = self.node_name(name);
        let first = self.first.clone();
        let quoted = shell_quote(&node);
        if self.options.drain {
            let secs = self.options.drain_timeout.as_secs().max(1);
            let command = format!(
                "k3s kubectl drain {quoted} --ignore-daemonsets --delete-emptydir-data --timeout={secs}s"
            );
            let request = ExecRequest::new(command)
                .sudo(true)
                .timeout(self.options.drain_timeout + DRAIN_GRACE);
            self.step(&first, name, "drain", request)
                .await
                .map_err(|reason| {
                    format!("{reason} (left cordoned: `kubectl uncordon {node}` once fixed)")
                })?;
        }
        let left_cordoned = |reason: String| {
            if self.options.drain {
                format!("{reason} (left cordoned: `kubectl uncordon {node}` once fixed)")
            } else {
                reason
            }
        };
        self.deliver(name).await.map_err(left_cordoned)?;
        let spec = self.hosts[name]
            .spec
            .as_ref()
            .ok_or_else(|| "no install spec".to_owned())?;
        let script = super::join::watched(self.inventory, spec, &upgrade_script(spec));
        let request = ExecRequest::new(script)
            .sudo(true)
            .stdin(remote::install_stdin(self.options.token.as_ref(), spec))
            .timeout(super::join::install_timeout(
                self.inventory,
                &self.hosts[name].host,
            ));
        self.step(name, name, "upgrade", request)
            .await
            .map_err(left_cordoned)?;
        let session = self
            .fleet
            .session(&first)
            .ok_or_else(|| format!("{first}: no SSH session"))?;
        let started = Instant::now();
        let waited = wait_node_version(session, &node, target, self.options.ready_timeout).await;
        *self
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default() += started.elapsed();
        waited.map_err(left_cordoned)?;
        if self.options.drain {
            let request = ExecRequest::new(format!("k3s kubectl uncordon {quoted}")).sudo(true);
            self.step(&first, name, "uncordon", request).await?;
        }
        Ok(())
    }

    // ---- report ---------------------------------------------------------------------------------

    fn report(mut self) -> UpgradeReport {
        let busy = std::mem::take(&mut *self.busy.lock().unwrap_or_else(|e| e.into_inner()));
        let target = self.target.as_ref().map(ToString::to_string);
        let hosts = self
            .order
            .iter()
            .map(|name| {
                let state = self.hosts.remove(name).expect("ordered hosts have a state");
                let status = state.status.unwrap_or(Status::Skipped);
                let from = state
                    .need
                    .as_ref()
                    .and_then(|n| n.from.as_ref())
                    .map(ToString::to_string);
                let to = match status {
                    Status::Done | Status::Unchanged => target.clone(),
                    _ => from.clone(),
                };
                UpgradeHost {
                    host: name.clone(),
                    role: state.host.role.as_str(),
                    from,
                    to,
                    status,
                    result: state
                        .result
                        .unwrap_or_else(|| status_word(status).to_owned()),
                    reason: state.reason,
                    seconds: busy.get(name).map_or(0.0, Duration::as_secs_f64),
                    log: self.log.host_file(name).map(|p| p.display().to_string()),
                }
            })
            .collect();
        UpgradeReport {
            cluster: self.inventory.cluster.name.clone(),
            target,
            target_source: self.target_source,
            hosts,
            nodes: self.nodes,
            messages: self.messages,
            log_dir: self.log.dir().map(|d| d.display().to_string()),
        }
    }
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Done => "upgraded",
        Status::Unchanged => "nothing to do",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        Status::Planned => "planned",
    }
}

/// The install bundle of `up` at the spec's (new) version, then a restart of the service
/// unless the installer restarted it. The installer restarts only when the binary, unit or env
/// file changed during its run; it does not when the binary was already in place: put there
/// by an earlier install that failed before its restart, or by the air-gap upload (the k3s
/// docs' air-gap upgrade also ends with a restart). The main PID tells.
pub fn upgrade_script(spec: &InstallSpec) -> String {
    let unit = remote::unit_name(spec);
    format!(
        "pid_before=$(systemctl show -p MainPID --value {unit} 2>/dev/null || echo 0)\n\
         {bundle}         pid_after=$(systemctl show -p MainPID --value {unit} 2>/dev/null || echo 0)\n\
         if [ \"$pid_after\" = \"$pid_before\" ]; then\n\
         \x20 echo 'edgeops: the installer left {unit} running as it was; restarting it'\n\
         \x20 systemctl restart {unit}\n\
         fi\n",
        bundle = remote::install_bundle(spec, true),
    )
}

/// Poll the node list on `api` (the first server) until node `node` is Ready and reports
/// `version`, or `timeout`. The API may be away for a moment (the first server restarting):
/// failed reads are retried until the deadline. Also used by `up` when it upgrades servers.
pub async fn wait_node_version(
    api: &Session,
    node: &str,
    version: &K3sVersion,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let want = version.to_string();
    loop {
        let request = ExecRequest::new(remote::NODES_COMMAND)
            .sudo(true)
            .timeout(NODE_POLL_TIMEOUT);
        let last = match api.exec(&request).await {
            Ok(out) if out.success() => match nodes::parse_nodes(&out.stdout_lossy()) {
                Ok(list) => match list.iter().find(|n| n.name == node) {
                    None => "not registered in the cluster".to_owned(),
                    Some(n) if n.kubelet_version != want => {
                        format!("still reports {}", n.kubelet_version)
                    }
                    Some(n) if n.ready != ConditionStatus::True => format!(
                        "at {want} but not Ready ({})",
                        n.ready_reason.as_deref().unwrap_or("no reason given")
                    ),
                    Some(_) => return Ok(()),
                },
                Err(e) => format!("nodes: {e}"),
            },
            Ok(out) => format!(
                "kubectl exited {}: {}",
                out.exit,
                last_lines(&String::from_utf8_lossy(&out.stderr), 1)
            ),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "node {node} not Ready at {want} after {}: {last}",
                humantime::format_duration(timeout)
            ));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upgrade_script_restarts_only_a_service_the_installer_left_alone() {
        let inventory = crate::k3s::test_inventory::pi_inventory();
        let host = inventory.hosts[1].clone();
        let join = Join::for_host(&inventory, &host).unwrap();
        let version: K3sVersion = "v1.31.4+k3s1".parse().unwrap();
        let spec = InstallSpec::new(
            &inventory,
            &host,
            join,
            &version,
            &crate::render::Renderer::builtin(),
        )
        .unwrap();
        let unit = remote::unit_name(&spec);
        let script = upgrade_script(&spec);
        assert!(script.starts_with(&format!(
            "pid_before=$(systemctl show -p MainPID --value {unit}"
        )));
        assert!(script.contains("INSTALL_K3S_VERSION=v1.31.4+k3s1"));
        assert!(script.contains("if [ \"$pid_after\" = \"$pid_before\" ]; then"));
        assert!(script.trim_end().ends_with("fi"));
    }

    #[test]
    fn downgrade_refusal_names_hosts_and_versions() {
        let err = UpgradeError::Downgrade {
            target: "v1.31.3+k3s1".parse().unwrap(),
            hosts: vec![("lab-01".into(), "v1.31.4+k3s1".parse().unwrap())],
        };
        let text = err.to_string();
        assert!(
            text.contains("refusing to downgrade to v1.31.3+k3s1"),
            "{text}"
        );
        assert!(text.contains("lab-01 runs v1.31.4+k3s1"), "{text}");
        assert!(text.contains("--force"), "{text}");
    }
}
