//! Air-gapped installs in a run: the release fetched and verified once on the workstation, and
//! each host given the files it lacks (`k3s::airgap_files`: which files, the check and put
//! scripts), verified on the host. Both scripts run with sudo; no host ever reaches the mirror.

use anyhow::Context;

use crate::engine::{Engine, Failure, FailureKind, HostId, Output};
use crate::inventory::Cluster;
use crate::k3s::airgap::{Artifacts, Sources};
use crate::k3s::airgap_files::{check_script, missing, put_script, uploads};
use crate::k3s::{K3sArch, K3sVersion};
use crate::phases::Progress;
use crate::phases::run_core::RunCore;
use crate::ssh::ExecRequest;

/// The release at `version` for `arches` (in host order, repeats ignored), fetched and verified
/// once on the workstation as phase `artifacts` of the run's progress; a note says what was
/// downloaded. A mismatch is an error: the run stops before anything is installed.
pub async fn fetch_release(
    core: &mut RunCore,
    cluster: &Cluster,
    version: &K3sVersion,
    arches: impl IntoIterator<Item = K3sArch>,
) -> anyhow::Result<Artifacts> {
    let mut wanted = Vec::new();
    for arch in arches {
        if !wanted.contains(&arch) {
            wanted.push(arch);
        }
    }
    let observer = core.engine.observer().clone();
    observer.event(&Progress::PhaseStart {
        phase: "artifacts",
        hosts: 0,
    });
    let sources = Sources::from_cluster(cluster)?;
    let artifacts = crate::k3s::airgap::prepare(&sources, version, &wanted)
        .await
        .context("air-gap artifacts")?;
    observer.event(&Progress::PhaseEnd { phase: "artifacts" });
    if !artifacts.downloaded.is_empty() {
        core.message(format!(
            "downloaded {} into {}",
            artifacts.downloaded.join(", "),
            artifacts.origin
        ));
    }
    Ok(artifacts)
}

/// Give host `id` (of architecture `arch`) the files of `artifacts` it lacks: hash what it has
/// (one round trip), then upload each missing file, verified on the host; at most as many
/// uploads at once across the run as `window` has permits (`None`: no limit beyond the
/// caller's). The number of files uploaded. Used by `up` and `upgrade`.
pub async fn deliver(
    engine: &Engine,
    id: HostId,
    artifacts: &Artifacts,
    arch: Option<K3sArch>,
    window: Option<&tokio::sync::Semaphore>,
) -> Result<usize, Failure> {
    let list = arch
        .and_then(|arch| uploads(artifacts, arch))
        .ok_or_else(|| Failure::refused("air-gap: no k3s binary prepared for this architecture"))?;
    let check = ExecRequest::new(check_script(&list)).sudo(true);
    let out = engine
        .run(id, "air-gap check", &check, Output::Logged)
        .await?;
    let lacking = missing(&list, &out.stdout_lossy());
    for upload in &lacking {
        let _permit = match window {
            Some(window) => Some(
                window
                    .acquire()
                    .await
                    .map_err(|e| Failure::new(FailureKind::Cancelled, e.to_string()))?,
            ),
            None => None,
        };
        let bytes = tokio::fs::read(&upload.local).await.map_err(|e| {
            Failure::refused(format!("air-gap: reading {}: {e}", upload.local.display()))
        })?;
        let request = ExecRequest::new(put_script(upload)).sudo(true).stdin(bytes);
        engine
            .run(
                id,
                &format!("upload {}", upload.remote),
                &request,
                Output::Logged,
            )
            .await?;
    }
    Ok(lacking.len())
}
