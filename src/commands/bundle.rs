//! `edgeops bundle --out DIR --version V --arch amd64,arm64`: make an offline bundle of a k3s
//! release (see `k3s::bundle`) and print what it holds.

use std::process::ExitCode;

use crate::cli::{BundleArgs, GlobalArgs, OutputFormat};
use crate::exit::Failure;
use crate::inventory::DEFAULT_INSTALL_URL;
use crate::k3s::airgap::DEFAULT_DOWNLOAD_URL;
use crate::k3s::bundle::{self, BundleRequest, MANIFEST};
use crate::k3s::{K3sArch, K3sVersion};

pub fn run(global: &GlobalArgs, args: &BundleArgs) -> anyhow::Result<ExitCode> {
    let cluster = match &args.inventory {
        Some(path) => Some(crate::inventory::load(path)?.cluster),
        None => None,
    };
    let version_text = args
        .version
        .clone()
        .or_else(|| cluster.as_ref().and_then(|c| c.version.clone()))
        .ok_or_else(|| {
            Failure::Usage(
                "give --version (or --inventory with a pinned `version`): a bundle is for one release"
                    .to_owned(),
            )
        })?;
    let version: K3sVersion = version_text
        .parse()
        .map_err(|e| Failure::Usage(format!("--version {version_text}: {e}")))?;
    let mut arches = Vec::new();
    let arch_names = match (&args.inventory, args.arch.is_empty()) {
        (Some(path), true) => inventory_arches(global, path)?,
        (None, true) => {
            return Err(Failure::Usage(
                "give --arch (amd64, arm64, arm), or --inventory to read them from the hosts"
                    .to_owned(),
            )
            .into());
        }
        _ => args.arch.clone(),
    };
    for name in &arch_names {
        let arch = match name.as_str() {
            "amd64" | "x86_64" => K3sArch::Amd64,
            "arm64" | "aarch64" => K3sArch::Arm64,
            "arm" | "armhf" | "armv7l" => K3sArch::Arm,
            other => {
                return Err(Failure::Usage(format!(
                    "--arch {other}: not a k3s architecture (amd64, arm64, arm)"
                ))
                .into());
            }
        };
        if !arches.contains(&arch) {
            arches.push(arch);
        }
    }
    let install_url = args
        .install_url
        .clone()
        .or_else(|| cluster.as_ref().map(|c| c.install_url.clone()))
        .unwrap_or_else(|| DEFAULT_INSTALL_URL.to_owned());
    let download_url = args
        .download_url
        .clone()
        .or_else(|| cluster.as_ref().and_then(|c| c.download_url.clone()))
        .unwrap_or_else(|| DEFAULT_DOWNLOAD_URL.to_owned());
    let request = BundleRequest {
        version,
        arches,
        install_url,
        download_url,
        images: !args.no_images,
        out: args.out.clone(),
    };
    let files = super::runtime()?.block_on(bundle::make(&request))?;
    match global.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({
                "dir": request.out,
                "version": request.version.to_string(),
                "manifest": MANIFEST,
                "files": files,
            })
        ),
        OutputFormat::Text => {
            println!(
                "bundle {}: k3s {} for {}, every file verified against the release's checksums",
                request.out.display(),
                request.version,
                request
                    .arches
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for file in &files {
                println!(
                    "  {:<40} {:>12} bytes  sha256 {}",
                    file.name, file.bytes, file.sha256
                );
            }
            if bundle::is_archive(&request.out) {
                let folder = request.out.with_extension("");
                println!(
                    "archive: {} holds {}/ with the manifest {MANIFEST} (sha256sum format); \
                     unpack it at the site (`tar -xf`) and use `artifacts_dir = \"{}\"`",
                    request.out.display(),
                    folder.file_name().unwrap_or_default().to_string_lossy(),
                    folder.display()
                );
            } else {
                println!(
                    "manifest: {} (sha256sum format); use it with `artifacts_dir = \"{}\"`",
                    request.out.join(MANIFEST).display(),
                    request.out.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The k3s architectures of the inventory's hosts (`uname -m` on each, at once, over SSH as
/// `exec` does): every host must answer, or the bundle could miss an architecture.
fn inventory_arches(global: &GlobalArgs, path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    use crate::fleet::{Fleet, FleetSettings, Silent};
    use crate::ssh::ExecRequest;
    use std::sync::Arc;

    let inventory = crate::inventory::load(path)?;
    let hosts = crate::inventory::select(&inventory, global.limit.as_deref())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let setup = super::exec::ssh_setup(&hosts, false)?;
    let settings = FleetSettings {
        concurrency: global.hosts_at_once(&inventory),
        ..Default::default()
    };
    // No limit of its own: each host's `command_timeout` from the inventory bounds it.
    let request = ExecRequest::new("uname -m");
    let results = super::runtime()?.block_on(async {
        let (fleet, results) = Fleet::connect_and_run(
            setup.targets,
            setup.ctx,
            settings,
            Arc::new(Silent),
            "arch",
            |session| {
                let request = &request;
                async move { Ok(session.exec(request).await?) }
            },
        )
        .await;
        fleet.close_all().await;
        results
    });
    let mut arches = Vec::new();
    let mut problems = Vec::new();
    for result in results {
        match result.outcome {
            Ok(out) if out.success() => {
                let machine = out.stdout_lossy().trim().to_owned();
                match K3sArch::from_uname(&machine) {
                    Ok(arch) => {
                        if !arches.contains(&arch.as_str().to_owned()) {
                            arches.push(arch.as_str().to_owned());
                        }
                    }
                    Err(e) => problems.push(format!("{}: {e}", result.host)),
                }
            }
            Ok(out) => problems.push(format!("{}: uname -m failed ({})", result.host, out.exit)),
            Err(e) => problems.push(format!("{}: {e}", result.host)),
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "cannot read every host's architecture (give --arch instead): {}",
            problems.join("; ")
        );
    }
    Ok(arches)
}
