//! `up`'s preparation of hosts before k3s installs: the Raspberry Pi memory cgroup (edit
//! cmdline.txt, reboot, reconnect) and, on air-gapped sites, the release fetched once on the
//! workstation and delivered to the hosts that lack it.

use super::*;

impl Runner<'_> {
    /// The live hosts whose Raspberry Pi boot needs the memory cgroup flags.
    pub(super) fn pis_needing_cgroup(&self) -> Vec<HostId> {
        self.alive_where(|_, s| s.facts.as_ref().is_some_and(Facts::pi_needs_cgroup))
    }

    /// Raspberry Pis without the memory cgroup: add the flags to cmdline.txt, reboot, wait for
    /// the new boot (a new boot id) on the same session, reconnected, within [`REBOOT_WAIT`].
    /// All at once unless `--serial`; with `--no-reboot` such hosts fail with the reason instead.
    pub(super) async fn pi_cgroups(&mut self, pis: &[HostId]) -> anyhow::Result<()> {
        if self.options.reboot == Reboot::Never {
            for &id in pis {
                let state = &mut self.hosts[id];
                let file = state
                    .facts
                    .as_ref()
                    .and_then(|f| f.cmdline_file.clone())
                    .unwrap_or_default();
                state.fail(Failure::refused(format!(
                    "Raspberry Pi without the memory cgroup: add `cgroup_memory=1 cgroup_enable=memory` \
                     to {file} and reboot (--no-reboot was given)"
                )));
            }
            return Ok(());
        }
        let width = match self.options.reboot {
            Reboot::Serial => 1,
            _ => self.core.engine.settings().concurrency,
        };
        let this = &*self;
        let results = this
            .core
            .engine
            .each_noting(
                "pi cgroups",
                pis,
                width,
                |id| this.enable_cgroup_and_reboot(id),
                |_, _| "memory cgroup enabled, rebooted".to_owned(),
            )
            .await;
        let mut first_rebooted = false;
        for (id, result) in results {
            match result {
                Ok(()) => first_rebooted |= id == self.core.first,
                Err(failure) => self.hosts[id].fail(failure),
            }
        }
        // The lock lives on tmpfs: a reboot of the first server dropped it. Take it again.
        if first_rebooted && self.core.lock.is_held() {
            self.retake_lock().await?;
        }
        Ok(())
    }

    pub(super) async fn enable_cgroup_and_reboot(&self, id: HostId) -> Result<(), Failure> {
        let Some(facts) = self.hosts[id].facts.as_ref() else {
            return Err(Failure::refused("no facts"));
        };
        let file = facts.cmdline_file.clone().unwrap_or_default();
        let old_boot = facts.boot_id.clone();
        let script = remote::pi_cgroup_script(&file);
        self.core
            .engine
            .run(
                id,
                "enable the memory cgroup",
                &ExecRequest::new(script).sudo(true),
                Output::Logged,
            )
            .await?;
        let Some(remote) = self.core.engine.remote(id) else {
            return Err(Failure::new(FailureKind::Unreachable, "no SSH session"));
        };
        let name = self.core.engine.name(id);
        let deadline = Instant::now() + REBOOT_WAIT;
        let mut last_error = String::from("no answer");
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Some(session) = remote.session()
                && session.is_closed()
                && let Err(e) = session.reconnect(deadline - Instant::now()).await
            {
                last_error = e.to_string();
                continue;
            }
            // The boot id and, in the same exec, whether the memory controller is now on.
            let request = ExecRequest::new(format!(
                "{}; {}",
                remote::BOOT_ID_COMMAND,
                crate::host::pi_memory::MEMORY_CHECK
            ))
            .timeout(BOOT_CHECK_TIMEOUT);
            match self
                .core
                .engine
                .exec_unlogged(id, "boot id", &request)
                .await
            {
                Ok(out) if out.success() => {
                    let stdout = out.stdout_lossy();
                    let boot = stdout.lines().next().unwrap_or("").trim().to_owned();
                    if !boot.is_empty() && boot != old_boot {
                        self.core.engine.log().write(
                            name,
                            "rebooted",
                            &format!("new boot id {boot}\n{stdout}"),
                        );
                        if !crate::host::pi_memory::memory_on(&stdout) {
                            return Err(Failure::refused(
                                crate::host::pi_memory::still_off_reason(&file),
                            ));
                        }
                        return Ok(());
                    }
                }
                Ok(out) => last_error = format!("boot id check: {}", out.exit),
                Err(failure) => last_error = failure.reason,
            }
        }
        Err(Failure::new(
            FailureKind::TimedOut,
            format!(
                "rebooted for the memory cgroup but did not come back within {} ({last_error})",
                humantime::format_duration(REBOOT_WAIT)
            ),
        ))
    }

    /// `plan` on an air-gapped cluster: say where the release would come from, reading only the
    /// workstation's cache (no download, no host touched).
    pub(super) fn plan_airgap(&mut self) {
        let Some(version) = self.version.clone() else {
            return;
        };
        let names = self.airgap_hosts();
        if names.is_empty() {
            return;
        }
        let arches = self.airgap_arches(&names);
        let cluster = &self.inventory.cluster;
        let note = crate::k3s::airgap_files::plan_note_for(cluster, &version, names.len(), &arches);
        self.message(note);
    }

    /// Live hosts that will run the installer (and so need the release on an air-gapped site).
    pub(super) fn airgap_hosts(&self) -> Vec<HostId> {
        if !self.inventory.cluster.airgap || self.version.is_none() {
            return Vec::new();
        }
        self.alive_where(|_, s| {
            matches!(
                s.action(),
                Action::Install | Action::Reconfigure | Action::Upgrade
            )
        })
    }

    /// The architectures of `hosts`, each once, in host order.
    pub(super) fn airgap_arches(&self, hosts: &[HostId]) -> Vec<K3sArch> {
        let mut arches = Vec::new();
        for &id in hosts {
            if let Some(arch) = self.hosts[id].facts.as_ref().and_then(|f| f.arch)
                && !arches.contains(&arch)
            {
                arches.push(arch);
            }
        }
        arches
    }

    /// Air-gapped clusters: fetch and verify the release once on the workstation (any mismatch
    /// stops the run before anything is installed), then give each host that installs what it
    /// lacks, verified on the host (`phases::airgap`). Checks at full width; at most
    /// [`AIRGAP_UPLOADS`] uploads at once (each holds a file in memory).
    pub(super) async fn airgap(&mut self, hosts: &[HostId]) -> anyhow::Result<()> {
        let Some(version) = self.version.clone() else {
            return Ok(());
        };
        let arches = self.airgap_arches(hosts);
        let cluster = &self.inventory.cluster;
        let artifacts = airgap::fetch_release(&mut self.core, cluster, &version, arches).await?;
        let uploads = tokio::sync::Semaphore::new(AIRGAP_UPLOADS);
        let (this, artifacts, uploads) = (&*self, &artifacts, &uploads);
        let results = this
            .core
            .engine
            .each_noting(
                "upload",
                hosts,
                this.core.engine.settings().concurrency,
                |id| {
                    let arch = this.hosts[id].facts.as_ref().and_then(|f| f.arch);
                    airgap::deliver(&this.core.engine, id, artifacts, arch, Some(uploads))
                },
                |_, n| match n {
                    0 => "artifacts already there".to_owned(),
                    n => format!("{n} files uploaded and verified"),
                },
            )
            .await;
        for (id, result) in results {
            if let Err(failure) = result {
                self.hosts[id].fail(failure);
            }
        }
        Ok(())
    }
}
