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
    for name in &args.arch {
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
