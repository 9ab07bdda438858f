//! The deciding half of `up` (all that `plan` runs): facts in one round trip per host (the first
//! server's carrying the lock or the node list), preflight refusals and warnings, the sudo
//! password check, one version for every node, and each host's action.

use super::*;

/// The first server's facts exec when it carries more (the lock on `up`, the node list on
/// `status`): run with sudo; its whole output is kept for the caller.
pub(super) struct FirstFacts {
    pub(super) script: String,
    /// The script is `fold::facts_with_lock` (else `fold::facts_with_nodes`).
    pub(super) with_lock: bool,
    /// `Err`: the exec did not come back (connection, timeout, Ctrl-C).
    pub(super) reply: Mutex<Option<Result<ExecOutput, ()>>>,
}

impl Runner<'_> {
    /// One facts round trip per host; `lock`: the first server runs that script instead (with
    /// sudo), its whole output kept in `lock.reply`.
    pub(super) async fn gather(&mut self, lock: Option<&FirstFacts>) {
        let hosts: Vec<HostId> = self.core.engine.ids().collect();
        let (engine, first) = (&self.core.engine, self.core.first);
        let results = engine
            .each("facts", &hosts, |id| async move {
                let log = engine.log();
                let host = engine.name(id);
                let Some(lock) = lock.filter(|_| id == first) else {
                    return facts::read(engine, id).await;
                };
                let request = ExecRequest::new(lock.script.clone()).sudo(true);
                let out = match engine.exec_unlogged(id, "facts", &request).await {
                    Ok(out) => out,
                    Err(e) => {
                        *lock.reply.lock().unwrap_or_else(|e| e.into_inner()) = Some(Err(()));
                        return Err(e);
                    }
                };
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
            })
            .await;
        for (id, result) in results {
            match result {
                Ok(facts) => self.hosts[id].facts = Some(facts),
                Err(failure) => {
                    self.core.engine.log().write(
                        self.core.engine.name(id),
                        "facts: error",
                        &failure.reason,
                    );
                    self.hosts[id].fail(failure);
                }
            }
        }
    }

    pub(super) fn preflight(&mut self) {
        let hosts: Vec<(&Host, Option<&Facts>)> = self
            .hosts
            .iter()
            .map(|(_, s)| (&s.host, s.facts.as_ref()))
            .collect();
        let verdicts = preflight::check(&hosts);
        let mut notes = Vec::new();
        for ((_, state), verdict) in self.hosts.iter_mut().zip(verdicts) {
            let Some(verdict) = verdict else {
                continue;
            };
            state.warnings.extend(verdict.warnings);
            if !verdict.refusals.is_empty() && state.alive() {
                state.fail(Failure::refused(format!(
                    "preflight: {}",
                    verdict.refusals.join("; ")
                )));
            }
            for warning in &state.warnings {
                notes.push(format!("{}: warning: {warning}", state.host.name));
            }
        }
        for note in notes {
            self.message(note);
        }
    }

    /// The hosts whose `sudo = "password"` must be proven before any command carries a secret.
    pub(super) fn password_sudo_hosts(&self) -> Vec<HostId> {
        self.alive_where(|_, s| matches!(s.host.ssh.sudo, crate::inventory::Sudo::Password { .. }))
    }

    /// `sudo = "password"` hosts prove their password here, once, before any command that
    /// carries a secret (`Session::check_sudo`: the password alone, one attempt); a refusal
    /// fails the host in preflight. Other hosts cost nothing.
    pub(super) async fn sudo_preflight(&mut self, hosts: &[HostId]) {
        let engine = &self.core.engine;
        let results = engine
            .each("sudo check", hosts, |id| async move {
                if let Some(session) = engine.remote(id).and_then(|r| r.session()) {
                    session.check_sudo().await.map_err(|e| {
                        Failure::from_ssh("sudo check", &e, engine.log().redactor())
                    })?;
                }
                Ok(())
            })
            .await;
        for (id, result) in results {
            if let Err(failure) = result
                && self.hosts[id].alive()
            {
                let name = self.core.engine.name(id);
                let reason = failure
                    .reason
                    .strip_prefix("sudo check: ")
                    .unwrap_or(&failure.reason)
                    .to_owned();
                self.core
                    .engine
                    .log()
                    .write(name, "sudo check: error", &reason);
                self.hosts[id].fail(Failure {
                    reason: format!("preflight: {reason}"),
                    ..failure
                });
            }
        }
    }

    /// One version for every node: the inventory's pin; else, when the cluster exists, the
    /// version its first server runs (a channel that moved on must not split the cluster);
    /// else the channel, resolved once ([`CHANNEL_TIMEOUT`]).
    pub(super) async fn resolve_version(&mut self) -> anyhow::Result<()> {
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
        let first = &self.hosts[self.core.first];
        let running = first
            .facts
            .as_ref()
            .filter(|_| first.runs_server())
            .and_then(|f| f.k3s_version.clone());
        if let Some(version) = running {
            self.version = Some(version);
            self.version_source = Some(format!("running on {}", self.first_name()));
            return Ok(());
        }
        if !first.alive() {
            // Nothing can be installed without the first server; no need to ask the channel.
            return Ok(());
        }
        let channel: Channel = cluster
            .channel
            .parse()
            .map_err(|e| anyhow::anyhow!("[cluster] channel {:?}: {e}", cluster.channel))?;
        let observer = self.core.engine.observer();
        observer.event(&Progress::PhaseStart {
            phase: "resolve",
            hosts: 0,
        });
        let resolver = ChannelResolver::new(CHANNEL_TIMEOUT)?;
        let version = resolver
            .resolve(&cluster.channel_url, &channel)
            .await
            .with_context(|| format!("resolving k3s channel {channel}"))?;
        observer.event(&Progress::PhaseEnd { phase: "resolve" });
        self.version = Some(version);
        self.version_source = Some(format!("channel {channel} at {}", cluster.channel_url));
        Ok(())
    }

    /// Each live host's install spec and action (`decide`), from its facts and the version.
    pub(super) fn decide_all(&mut self) {
        let Some(version) = self.version.clone() else {
            return;
        };
        let renderer = match renderer_for(self.inventory) {
            Ok(r) => r,
            Err(e) => {
                for (_, state) in self.hosts.iter_mut().filter(|(_, s)| s.alive()) {
                    state.fail(Failure::refused(format!("templates: {e:#}")));
                }
                return;
            }
        };
        for (_, state) in self.hosts.iter_mut().filter(|(_, s)| s.alive()) {
            let spec = Join::for_host(self.inventory, &state.host).and_then(|join| {
                InstallSpec::new(self.inventory, &state.host, join, &version, &renderer)
            });
            let spec = match spec {
                Ok(spec) => spec,
                Err(e) => {
                    state.fail(Failure::refused(e.to_string()));
                    continue;
                }
            };
            let Some(facts) = state.facts.as_ref() else {
                // Only hosts whose facts came back are alive here.
                continue;
            };
            match decide(&state.host, facts, &spec, &version) {
                Ok(_) if facts.pi_memory_cgroup_stuck() => {
                    let file = facts.cmdline_file.as_deref().unwrap_or("cmdline.txt");
                    state.fail(Failure::refused(crate::host::pi_memory::still_off_reason(
                        file,
                    )));
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
                Err(reason) => state.fail(Failure::refused(reason)),
            }
            state.spec = Some(spec);
        }
    }
}
