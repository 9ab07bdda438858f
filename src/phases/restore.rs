//! `restore`'s remote half: bring a cluster back from an etcd snapshot the way k3s documents
//! it. Two halves so the CLI can ask in between: [`Restore::survey`] (connect to every host,
//! take the cluster lock, find k3s on each) and [`Restore::execute`]: stop k3s on every server,
//! upload the snapshot to the first server, `k3s server --cluster-reset
//! --cluster-reset-restore-path` there, start it and wait for the API; then each other server
//! in turn: move its etcd data aside, start, wait Ready; then restart the agents and wait Ready.
//! Scripts in `sh/restore-*.sh`; the snapshot's check against the manifest happens before this.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::fleet::{Fleet, FleetSettings, Silent};
use crate::inventory::{Host, Inventory, Role};
use crate::k3s::install::first_server;
use crate::shell::with_vars;
use crate::ssh::{ConnectOptions, ExecRequest, Session, SshContext};

use super::outcome::last_lines;
use super::remote;
use crate::engine::runlog::RunLog;

/// Stopping one k3s unit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Uploading the snapshot to the first server.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// Where the snapshot is uploaded on the first server (removed after the reset).
const UPLOAD_DIR: &str = "/var/lib/rancher/k3s/server";

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub fleet: FleetSettings,
    pub lock_stale_after: Duration,
    /// The cluster reset, and then the first server's API, each get this long.
    pub api_timeout: Duration,
    /// Each other server and each agent: start and be Ready within this.
    pub ready_timeout: Duration,
}

/// What the survey found on one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub role: &'static str,
    pub node: String,
    /// `first server`, `servers` or `agents`: the order of execution.
    pub phase: &'static str,
    pub k3s_installed: bool,
    pub unit: Option<String>,
    pub active: bool,
    /// Why this host cannot take part (unreachable, survey failed, k3s missing).
    pub problem: Option<String>,
}

impl HostPlan {
    /// What the restore will do on this host, for the plan.
    pub fn action(&self) -> &'static str {
        match self.phase {
            "first server" => {
                "stop k3s, upload the snapshot, k3s --cluster-reset --cluster-reset-restore-path, start, wait for the API"
            }
            "servers" => {
                "stop k3s; after the first server: move server/db aside, start, wait Ready (one at a time)"
            }
            _ => "restart k3s-agent after the servers, wait Ready",
        }
    }
}

/// `sh/restore-survey.sh`'s answer: (k3s on PATH, the k3s unit installed, it is active).
fn parse_survey(text: &str) -> (bool, Option<String>, bool) {
    let (mut k3s, mut unit, mut active) = (false, None, false);
    for line in text.lines() {
        match line.trim().split_once(' ') {
            Some(("k3s", v)) => k3s = v == "yes",
            Some(("unit", v)) if v != "none" => unit = Some(v.to_owned()),
            Some(("active", v)) => active = v == "yes",
            _ => {}
        }
    }
    (k3s, unit, active)
}

/// One host's result.
#[derive(Debug, Clone, Serialize)]
pub struct HostOutcome {
    pub host: String,
    pub role: &'static str,
    pub ok: bool,
    pub seconds: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub cluster: String,
    pub snapshot: String,
    pub hosts: Vec<HostOutcome>,
    pub messages: Vec<String>,
    pub log_dir: Option<String>,
}

impl RestoreReport {
    pub fn failed_hosts(&self) -> usize {
        self.hosts.iter().filter(|h| !h.ok).count()
    }
}

/// A restore between its survey and its execution: sessions open, the lock held.
pub struct Restore {
    cluster: String,
    first: String,
    fleet: Fleet,
    options: RestoreOptions,
    log: RunLog,
    run_id: String,
    locked: bool,
    plans: Vec<HostPlan>,
    messages: Vec<String>,
}

impl Restore {
    /// Connect to every host, take the cluster lock on the first server, survey each host.
    pub async fn survey(
        inventory: &Inventory,
        targets: Vec<ConnectOptions>,
        ctx: SshContext,
        options: RestoreOptions,
        log: RunLog,
    ) -> anyhow::Result<Restore> {
        let first = first_server(inventory)?.name.clone();
        let fleet = Fleet::connect_all(targets, ctx, options.fleet.clone(), Arc::new(Silent)).await;
        let mut restore = Restore {
            cluster: inventory.cluster.name.clone(),
            first: first.clone(),
            fleet,
            options,
            log,
            run_id: super::lock::new_run_id(),
            locked: false,
            plans: Vec::new(),
            messages: Vec::new(),
        };
        if let Err(e) = restore.lock().await {
            restore.fleet.close_all().await;
            return Err(e);
        }
        let script = include_str!("sh/restore-survey.sh").to_owned();
        let results = restore
            .fleet
            .run("survey", |session| {
                let script = script.clone();
                async move {
                    let out = session.exec(&ExecRequest::new(script).sudo(true)).await?;
                    if !out.success() {
                        return Err(anyhow::anyhow!(
                            "survey failed ({}): {}",
                            out.exit,
                            last_lines(&String::from_utf8_lossy(&out.stderr), 3)
                        )
                        .into());
                    }
                    Ok(out.stdout_lossy())
                }
            })
            .await;
        let mut found: std::collections::HashMap<String, Result<String, String>> = results
            .into_iter()
            .map(|r| (r.host, r.outcome.map_err(|e| e.to_string())))
            .collect();
        let ordered: Vec<(&Host, &'static str)> = inventory
            .hosts
            .iter()
            .filter(|h| h.name == first)
            .map(|h| (h, "first server"))
            .chain(
                inventory
                    .hosts
                    .iter()
                    .filter(|h| h.role == Role::Server && h.name != first)
                    .map(|h| (h, "servers")),
            )
            .chain(
                inventory
                    .hosts
                    .iter()
                    .filter(|h| h.role == Role::Agent)
                    .map(|h| (h, "agents")),
            )
            .collect();
        for (host, phase) in ordered {
            let want_unit = if host.role == Role::Server {
                "k3s"
            } else {
                "k3s-agent"
            };
            let mut plan = HostPlan {
                host: host.name.clone(),
                role: host.role.as_str(),
                node: host.node_name.clone(),
                phase,
                k3s_installed: false,
                unit: None,
                active: false,
                problem: None,
            };
            match found.remove(&host.name) {
                Some(Ok(text)) => {
                    (plan.k3s_installed, plan.unit, plan.active) = parse_survey(&text);
                    if !plan.k3s_installed || plan.unit.as_deref() != Some(want_unit) {
                        plan.problem = Some(format!(
                            "k3s is not installed as {want_unit}.service (a re-flashed board?): \
                             run `edgeops up INVENTORY` first, then restore"
                        ));
                    }
                }
                Some(Err(e)) => plan.problem = Some(e),
                None => plan.problem = Some("no SSH session".to_owned()),
            }
            restore.plans.push(plan);
        }
        Ok(restore)
    }

    pub fn plan(&self) -> &[HostPlan] {
        &self.plans
    }

    /// Hosts that stop the restore before it starts.
    pub fn problems(&self) -> Vec<String> {
        self.plans
            .iter()
            .filter_map(|p| p.problem.as_ref().map(|why| format!("{}: {why}", p.host)))
            .collect()
    }

    async fn lock(&mut self) -> anyhow::Result<()> {
        let owner = super::lock::owner(&self.run_id, Some("edgeops restore"));
        let script = remote::lock_acquire_script(&owner, self.options.lock_stale_after);
        let session = self.session(&self.first.clone())?;
        let out = session
            .exec(&ExecRequest::new(script).sudo(true))
            .await
            .map_err(|e| anyhow::anyhow!("{}: cannot take the cluster lock: {e}", self.first))?;
        let answer = remote::parse_lock_answer(&out.stdout_lossy()).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: cannot take the cluster lock: {}",
                self.first,
                last_lines(&String::from_utf8_lossy(&out.stderr), 3)
            )
        })?;
        let note = super::lock::settle(
            answer,
            &self.cluster,
            &self.first,
            self.options.lock_stale_after,
        )?;
        self.locked = true;
        self.messages.extend(note);
        Ok(())
    }

    async fn release_lock(&mut self) {
        if !self.locked {
            return;
        }
        let request = super::lock::release_request(&self.run_id);
        let released = match self.session(&self.first.clone()) {
            Ok(session) => session
                .exec(&request)
                .await
                .map(|o| o.success())
                .unwrap_or(false),
            Err(_) => false,
        };
        if !released {
            self.messages.push(format!(
                "{}: could not release the cluster lock; it expires after {} (or: edgeops unlock INVENTORY)",
                self.first,
                humantime::format_duration(self.options.lock_stale_after)
            ));
        }
        self.locked = false;
    }

    fn session(&self, host: &str) -> anyhow::Result<Arc<Session>> {
        self.fleet
            .session(host)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{host}: no SSH session"))
    }

    /// Nothing was changed: release the lock and close the sessions.
    pub async fn abort(mut self) {
        self.release_lock().await;
        self.fleet.close_all().await;
    }

    /// Run `script` with sudo on `host`, logged; Err(reason) unless it exits 0.
    async fn step(&self, host: &str, what: &str, request: ExecRequest) -> Result<String, String> {
        let session = self.session(host).map_err(|e| e.to_string())?;
        let out = session
            .exec(&request)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let stdout = out.stdout_lossy();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        self.log.write(
            host,
            &format!("{what}: {}", out.exit),
            &format!("--- stdout\n{stdout}--- stderr\n{stderr}"),
        );
        if out.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{what} failed ({}): {}",
                out.exit,
                last_lines(&format!("{stdout}{stderr}"), 3)
            ))
        }
    }

    fn wait_node(&self, node: &str) -> ExecRequest {
        let secs = self.options.ready_timeout.as_secs().max(1).to_string();
        ExecRequest::new(with_vars(
            &[("node", node), ("secs", &secs)],
            include_str!("sh/restore-wait-node.sh"),
        ))
        .sudo(true)
        .timeout(self.options.ready_timeout + Duration::from_secs(30))
    }

    /// On the first server: forget the snapshot's node password of `node` (see the script).
    fn forget_password(&self, node: &str) -> ExecRequest {
        ExecRequest::new(with_vars(
            &[("node", node)],
            include_str!("sh/restore-forget-password.sh"),
        ))
        .sudo(true)
        .timeout(STOP_TIMEOUT)
    }

    /// Restore `bytes` (the verified snapshot file `file`) as described in the module doc.
    pub async fn execute(self, file: &str, bytes: Vec<u8>) -> RestoreReport {
        let mut outcomes: Vec<HostOutcome> = Vec::new();
        let plans = self.plans.clone();
        let servers: Vec<&HostPlan> = plans.iter().filter(|p| p.role == "server").collect();
        let outcome =
            |p: &HostPlan, started: Instant, result: Result<String, String>| HostOutcome {
                host: p.host.clone(),
                role: p.role,
                ok: result.is_ok(),
                seconds: started.elapsed().as_secs_f64(),
                detail: result.unwrap_or_else(|e| e),
            };

        // 1. Stop k3s on every server at once (etcd must not run anywhere during the reset).
        let started = Instant::now();
        let stops = servers.iter().map(|p| {
            let request = ExecRequest::new(with_vars(
                &[("unit", "k3s")],
                include_str!("sh/restore-stop.sh"),
            ))
            .sudo(true)
            .timeout(STOP_TIMEOUT);
            let host = p.host.clone();
            let this = &self;
            async move { (host.clone(), this.step(&host, "stop k3s", request).await) }
        });
        let stopped = futures::future::join_all(stops).await;
        let failed: Vec<String> = stopped
            .iter()
            .filter_map(|(h, r)| r.as_ref().err().map(|e| format!("{h}: {e}")))
            .collect();
        if !failed.is_empty() {
            // Nothing restored yet: start what was stopped again and report.
            for (host, _) in stopped.iter().filter(|(_, r)| r.is_ok()) {
                let request = ExecRequest::new("systemctl start k3s")
                    .sudo(true)
                    .timeout(self.options.ready_timeout);
                let _ = self.step(host, "start k3s again", request).await;
            }
            for p in &servers {
                let mine = failed
                    .iter()
                    .find(|f| f.starts_with(&format!("{}: ", p.host)));
                outcomes.push(outcome(
                    p,
                    started,
                    match mine {
                        Some(e) => Err(e.clone()),
                        None => Err(
                            "not restored: another server could not be stopped (k3s started again)"
                                .to_owned(),
                        ),
                    },
                ));
            }
            return self.finish(file, outcomes).await;
        }

        // 2. The first server: upload, reset from the snapshot, start, wait for the API.
        let first_plan = plans.iter().find(|p| p.phase == "first server").cloned();
        let Some(first_plan) = first_plan else {
            return self.finish(file, outcomes).await;
        };
        let started = Instant::now();
        let remote_path = format!("{UPLOAD_DIR}/edgeops-restore-{file}");
        let first = self.first.clone();
        let result = async {
            let session = self.session(&first).map_err(|e| e.to_string())?;
            tokio::time::timeout(
                UPLOAD_TIMEOUT,
                session.upload(&bytes, &remote_path, 0o600, None, true),
            )
            .await
            .map_err(|_| {
                format!(
                    "uploading the snapshot took longer than {}",
                    humantime::format_duration(UPLOAD_TIMEOUT)
                )
            })?
            .map_err(|e| format!("uploading the snapshot: {e}"))?;
            let secs = self.options.api_timeout.as_secs().max(1).to_string();
            let request = ExecRequest::new(with_vars(
                &[("snapshot", &remote_path), ("secs", &secs)],
                include_str!("sh/restore-first.sh"),
            ))
            .sudo(true)
            .timeout(self.options.api_timeout * 2 + Duration::from_secs(60));
            let said = self
                .step(&first, "cluster reset from the snapshot", request)
                .await?;
            self.step(&first, "wait Ready", self.wait_node(&first_plan.node))
                .await?;
            Ok(format!("restored: {}", last_lines(&said, 1)))
        }
        .await;
        let first_ok = result.is_ok();
        outcomes.push(outcome(&first_plan, started, result));
        let rest: Vec<&HostPlan> = plans.iter().filter(|p| p.phase != "first server").collect();
        if !first_ok {
            for p in rest {
                outcomes.push(outcome(
                    p,
                    Instant::now(),
                    Err("not started: the first server was not restored".to_owned()),
                ));
            }
            return self.finish(file, outcomes).await;
        }

        // 3. The other servers, one at a time: their old etcd data cannot rejoin.
        let aside = format!("edgeops-before-restore-{}", self.run_id);
        for p in rest.iter().filter(|p| p.phase == "servers") {
            let started = Instant::now();
            let secs = self.options.ready_timeout.as_secs().max(1).to_string();
            let request = ExecRequest::new(with_vars(
                &[("aside", &aside), ("secs", &secs)],
                include_str!("sh/restore-peer.sh"),
            ))
            .sudo(true)
            .timeout(self.options.ready_timeout + Duration::from_secs(30));
            let result = async {
                self.step(
                    &first,
                    "forget the old node password",
                    self.forget_password(&p.node),
                )
                .await?;
                let said = self.step(&p.host, "rejoin", request).await?;
                self.step(&first, "wait Ready", self.wait_node(&p.node))
                    .await?;
                Ok(format!("rejoined; {}", last_lines(&said, 1)))
            }
            .await;
            outcomes.push(outcome(p, started, result));
        }

        // 4. Agents, all at once: restart, then wait Ready.
        let agents: Vec<&HostPlan> = rest
            .iter()
            .copied()
            .filter(|p| p.phase == "agents")
            .collect();
        let runs = agents.iter().map(|p| {
            let this = &self;
            let first = first.clone();
            async move {
                let started = Instant::now();
                let secs = this.options.ready_timeout.as_secs().max(1).to_string();
                let request = ExecRequest::new(with_vars(
                    &[("secs", &secs)],
                    include_str!("sh/restore-agent.sh"),
                ))
                .sudo(true)
                .timeout(this.options.ready_timeout + Duration::from_secs(30));
                let result = async {
                    this.step(
                        &first,
                        "forget the old node password",
                        this.forget_password(&p.node),
                    )
                    .await?;
                    this.step(&p.host, "restart k3s-agent", request).await?;
                    this.step(&first, "wait Ready", this.wait_node(&p.node))
                        .await?;
                    Ok("restarted, Ready".to_owned())
                }
                .await;
                outcome(p, started, result)
            }
        });
        outcomes.extend(futures::future::join_all(runs).await);
        self.finish(file, outcomes).await
    }

    async fn finish(mut self, file: &str, hosts: Vec<HostOutcome>) -> RestoreReport {
        self.release_lock().await;
        self.fleet.close_all().await;
        RestoreReport {
            cluster: self.cluster.clone(),
            snapshot: file.to_owned(),
            hosts,
            messages: std::mem::take(&mut self.messages),
            log_dir: self.log.dir().map(|d| d.display().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survey_answers_are_read() {
        assert_eq!(
            parse_survey("k3s yes\nunit k3s\nactive yes\n"),
            (true, Some("k3s".to_owned()), true)
        );
        // A re-flashed board: nothing installed.
        assert_eq!(
            parse_survey("k3s no\nunit none\nactive no\n"),
            (false, None, false)
        );
        assert_eq!(parse_survey(""), (false, None, false));
    }

    #[test]
    fn every_phase_has_its_step_in_the_plan() {
        let plan = |phase| HostPlan {
            host: "h".into(),
            role: "server",
            node: "h".into(),
            phase,
            k3s_installed: true,
            unit: Some("k3s".into()),
            active: true,
            problem: None,
        };
        assert!(
            plan("first server")
                .action()
                .contains("--cluster-reset-restore-path")
        );
        assert!(plan("servers").action().contains("server/db aside"));
        assert!(plan("agents").action().contains("k3s-agent"));
    }
}
