//! `up`'s preparation of hosts before k3s installs: the Raspberry Pi memory cgroup (edit
//! cmdline.txt, reboot, reconnect) and, on air-gapped sites, the release fetched once on the
//! workstation and delivered to the hosts that lack it.

use super::*;

impl Runner<'_> {
    /// Raspberry Pis without the memory cgroup: add the flags to cmdline.txt, reboot, wait for
    /// the new boot (a new boot id) on the same session, reconnected. All at once unless
    /// `--serial`; with `--no-reboot` such hosts fail with the reason instead.
    pub(super) async fn pi_cgroups(&mut self) -> anyhow::Result<()> {
        let pis: Vec<String> = self
            .order
            .iter()
            .filter(|n| {
                let s = &self.hosts[*n];
                s.alive() && s.facts.as_ref().is_some_and(Facts::pi_needs_cgroup)
            })
            .cloned()
            .collect();
        if pis.is_empty() {
            return Ok(());
        }
        if self.options.reboot == Reboot::Never {
            for name in pis {
                let file = self.hosts[&name]
                    .facts
                    .as_ref()
                    .and_then(|f| f.cmdline_file.clone())
                    .unwrap_or_default();
                self.state_mut(&name).fail(format!(
                    "Raspberry Pi without the memory cgroup: add `cgroup_memory=1 cgroup_enable=memory` \
                     to {file} and reboot (--no-reboot was given)"
                ));
            }
            return Ok(());
        }
        self.observer.event(&Progress::PhaseStart {
            phase: "pi cgroups",
            hosts: pis.len(),
        });
        let width = match self.options.reboot {
            Reboot::Serial => 1,
            _ => self.options.fleet.concurrency.max(1),
        };
        let this = &*self;
        let results: Vec<(String, Result<(), String>)> = futures::stream::iter(pis)
            .map(|name| async move {
                this.observer.event(&Progress::HostStart {
                    phase: "pi cgroups",
                    host: &name,
                });
                let result = this.enable_cgroup_and_reboot(&name).await;
                let detail = match &result {
                    Ok(()) => "memory cgroup enabled, rebooted".to_owned(),
                    Err(reason) => reason.clone(),
                };
                this.observer.event(&Progress::HostDone {
                    phase: "pi cgroups",
                    host: &name,
                    ok: result.is_ok(),
                    detail: &detail,
                });
                (name, result)
            })
            .buffer_unordered(width)
            .collect()
            .await;
        self.observer.event(&Progress::PhaseEnd {
            phase: "pi cgroups",
        });
        let mut first_rebooted = false;
        for (name, result) in results {
            match result {
                Ok(()) => first_rebooted |= name == self.first,
                Err(reason) => self.state_mut(&name).fail(reason),
            }
        }
        // The lock lives on tmpfs: a reboot of the first server dropped it. Take it again.
        if first_rebooted && self.locked {
            self.locked = false;
            self.lock().await?;
        }
        Ok(())
    }

    pub(super) async fn enable_cgroup_and_reboot(&self, name: &str) -> Result<(), String> {
        let facts = self.hosts[name]
            .facts
            .as_ref()
            .expect("alive hosts have facts");
        let file = facts.cmdline_file.clone().unwrap_or_default();
        let old_boot = facts.boot_id.clone();
        let script = remote::pi_cgroup_script(&file);
        self.step(
            name,
            "enable the memory cgroup",
            ExecRequest::new(script).sudo(true),
            false,
        )
        .await?;
        let session = self
            .fleet
            .session(name)
            .ok_or_else(|| "no SSH session".to_owned())?;
        let deadline = Instant::now() + REBOOT_WAIT;
        let mut last_error = String::from("no answer");
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if session.is_closed()
                && let Err(e) = session.reconnect(deadline - Instant::now()).await
            {
                last_error = e.to_string();
                continue;
            }
            // The boot id and, in the same exec, whether the memory controller is now on.
            let request = ExecRequest::new(format!(
                "{}; {}",
                remote::BOOT_ID_COMMAND,
                crate::phases::pi_memory::MEMORY_CHECK
            ))
            .timeout(Duration::from_secs(10));
            match session.exec(&request).await {
                Ok(out) if out.success() => {
                    let stdout = out.stdout_lossy();
                    let boot = stdout.lines().next().unwrap_or("").trim().to_owned();
                    if !boot.is_empty() && boot != old_boot {
                        self.log
                            .write(name, "rebooted", &format!("new boot id {boot}\n{stdout}"));
                        if !crate::phases::pi_memory::memory_on(&stdout) {
                            return Err(crate::phases::pi_memory::still_off_reason(&file));
                        }
                        return Ok(());
                    }
                }
                Ok(out) => last_error = format!("boot id check: {}", out.exit),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(format!(
            "rebooted for the memory cgroup but did not come back within {} ({last_error})",
            humantime::format_duration(REBOOT_WAIT)
        ))
    }

    /// `plan` on an air-gapped cluster: say where the release would come from, reading only the
    /// workstation's cache (no download, no host touched).
    pub(super) fn plan_airgap(&mut self) {
        let Some(version) = self
            .version
            .clone()
            .filter(|_| self.inventory.cluster.airgap)
        else {
            return;
        };
        let names = self.airgap_hosts();
        if names.is_empty() {
            return;
        }
        let (origin, dir) = match &self.inventory.cluster.artifacts_dir {
            Some(dir) => (
                format!("artifacts_dir {}", dir.display()),
                Some(dir.clone()),
            ),
            None => match k3s_airgap::cache_root() {
                Ok(root) => {
                    let dir = root.join(version.to_string());
                    (format!("cache {}", dir.display()), Some(dir))
                }
                Err(e) => (format!("no cache folder: {e}"), None),
            },
        };
        let arches: Vec<(K3sArch, bool)> = self
            .airgap_arches(&names)
            .into_iter()
            .map(|arch| {
                let cached = dir.as_ref().is_some_and(|d| {
                    d.join(arch.binary_asset()).is_file() && d.join(arch.checksum_asset()).is_file()
                });
                (arch, cached)
            })
            .collect();
        let note = airgap::plan_note(&version.to_string(), names.len(), &origin, &arches);
        self.message(note);
    }

    /// Live hosts that will run the installer (and so need the release on an air-gapped site).
    pub(super) fn airgap_hosts(&self) -> Vec<String> {
        self.order
            .iter()
            .filter(|n| {
                let s = &self.hosts[*n];
                s.alive()
                    && matches!(
                        s.action(),
                        Action::Install | Action::Reconfigure | Action::Upgrade
                    )
            })
            .cloned()
            .collect()
    }

    /// The architectures of `names`, each once, in host order.
    pub(super) fn airgap_arches(&self, names: &[String]) -> Vec<K3sArch> {
        let mut arches = Vec::new();
        for name in names {
            if let Some(arch) = self.hosts[name].facts.as_ref().and_then(|f| f.arch)
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
    /// `AIRGAP_UPLOADS` uploads at once (each holds a file in memory).
    pub(super) async fn airgap(&mut self) -> anyhow::Result<()> {
        let Some(version) = self
            .version
            .clone()
            .filter(|_| self.inventory.cluster.airgap)
        else {
            return Ok(());
        };
        let names = self.airgap_hosts();
        let arches = self.airgap_arches(&names);
        if names.is_empty() {
            return Ok(());
        }
        self.observer.event(&Progress::PhaseStart {
            phase: "artifacts",
            hosts: 0,
        });
        let sources = k3s_airgap::Sources::from_cluster(&self.inventory.cluster)?;
        let artifacts = k3s_airgap::prepare(&sources, &version, &arches)
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
        self.observer.event(&Progress::PhaseStart {
            phase: "upload",
            hosts: names.len(),
        });
        let uploads = tokio::sync::Semaphore::new(AIRGAP_UPLOADS);
        let (this, artifacts, uploads) = (&*self, &artifacts, &uploads);
        let results: Vec<(String, Result<usize, String>)> = futures::stream::iter(names)
            .map(|name| async move {
                this.observer.event(&Progress::HostStart {
                    phase: "upload",
                    host: &name,
                });
                let result = this.deliver(&name, artifacts, uploads).await;
                let detail = match &result {
                    Ok(0) => "artifacts already there".to_owned(),
                    Ok(n) => format!("{n} files uploaded and verified"),
                    Err(reason) => reason.clone(),
                };
                this.observer.event(&Progress::HostDone {
                    phase: "upload",
                    host: &name,
                    ok: result.is_ok(),
                    detail: &detail,
                });
                (name, result)
            })
            .buffer_unordered(self.options.fleet.concurrency.max(1))
            .collect()
            .await;
        self.observer.event(&Progress::PhaseEnd { phase: "upload" });
        for (name, result) in results {
            if let Err(reason) = result {
                self.state_mut(&name).fail(reason);
            }
        }
        Ok(())
    }

    /// One host: hash what it has (one round trip), upload each missing file. The number of
    /// files uploaded.
    pub(super) async fn deliver(
        &self,
        name: &str,
        artifacts: &k3s_airgap::Artifacts,
        uploads: &tokio::sync::Semaphore,
    ) -> Result<usize, String> {
        let arch = self.hosts[name].facts.as_ref().and_then(|f| f.arch);
        let list = arch
            .and_then(|arch| airgap::uploads(artifacts, arch))
            .ok_or_else(|| "air-gap: no k3s binary prepared for this architecture".to_owned())?;
        let check = ExecRequest::new(airgap::check_script(&list)).sudo(true);
        let out = self.step(name, "air-gap check", check, false).await?;
        let missing = airgap::missing(&list, &out.stdout_lossy());
        for upload in &missing {
            let _permit = uploads.acquire().await.map_err(|e| e.to_string())?;
            let bytes = tokio::fs::read(&upload.local)
                .await
                .map_err(|e| format!("air-gap: reading {}: {e}", upload.local.display()))?;
            let request = ExecRequest::new(airgap::put_script(upload))
                .sudo(true)
                .stdin(bytes);
            self.step(name, &format!("upload {}", upload.remote), request, false)
                .await?;
        }
        Ok(missing.len())
    }
}
