//! `edgeops bundle`: on a connected machine, everything an air-gapped site needs for one k3s
//! version and the architectures named: the install script, each architecture's binary and
//! `sha256sum-ARCH.txt`, and its air-gap image tarball, each verified against the release's
//! checksum file, in one folder with a manifest of sha256 sums (`edgeops-bundle.sha256`, the
//! `sha256sum` format). The folder is laid out as `[cluster] artifacts_dir` expects, so it is
//! used as it is (or packed as one `.tar` holding that folder). Built beside the destination and renamed into place: a failed bundle leaves
//! nothing behind.

use std::path::{Path, PathBuf};

use super::airgap::{self, AirgapError, Sources, checksum_for, sha256_file};
use super::{K3sArch, K3sVersion};

pub use super::airgap::MANIFEST;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Airgap(#[from] AirgapError),
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("{} already exists: give a new folder (a bundle is never mixed into another)", .0.display())]
    Exists(PathBuf),
    #[error(
        "{checksums} lists no air-gap image tarball for {arch} (k3s-airgap-images-{arch}.tar.zst, .tar.gz or .tar); pass --no-images to bundle without images"
    )]
    NoImages { checksums: String, arch: String },
}

/// What to bundle.
#[derive(Debug, Clone)]
pub struct BundleRequest {
    pub version: K3sVersion,
    pub arches: Vec<K3sArch>,
    pub install_url: String,
    pub download_url: String,
    pub images: bool,
    pub out: PathBuf,
}

/// One file of a finished bundle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BundledFile {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |e| BundleError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Fetch, verify and lay out the bundle; returns its files (manifest excluded).
pub async fn make(request: &BundleRequest) -> Result<Vec<BundledFile>, BundleError> {
    let out = &request.out;
    if out.exists() {
        return Err(BundleError::Exists(out.clone()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".to_owned());
    let staging = parent.join(format!(".{name}.edgeops-partial-{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let result = build(request, &staging).await;
    let dir = staging.join(request.version.to_string());
    let finished = match result {
        Ok(files) if is_archive(out) => archive(&staging, &dir, out).map(|()| files),
        Ok(files) => std::fs::rename(&dir, out).map_err(io(out)).map(|()| files),
        Err(err) => Err(err),
    };
    match finished {
        Ok(files) => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(files)
        }
        Err(err) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(err)
        }
    }
}

/// `--out NAME.tar`: one archive instead of a folder.
pub fn is_archive(out: &Path) -> bool {
    out.extension().is_some_and(|e| e == "tar")
}

/// Pack the finished folder as `out` (a .tar whose one top folder is named after it, e.g.
/// `k3s-v1.31.4.tar` → `k3s-v1.31.4/`), with the system's `tar`; renamed into place at the end.
fn archive(staging: &Path, dir: &Path, out: &Path) -> Result<(), BundleError> {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".to_owned());
    let top = staging.join(&stem);
    std::fs::rename(dir, &top).map_err(io(&top))?;
    let part = staging.join(format!("{stem}.tar"));
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&part)
        .arg("-C")
        .arg(staging)
        .arg(&stem)
        .status()
        .map_err(io(&part))?;
    if !status.success() {
        return Err(BundleError::Io {
            path: part,
            reason: format!("tar exited with {status}"),
        });
    }
    std::fs::rename(&part, out).map_err(io(out))
}

async fn build(request: &BundleRequest, staging: &Path) -> Result<Vec<BundledFile>, BundleError> {
    let sources = Sources {
        install_url: request.install_url.clone(),
        download_url: request.download_url.clone(),
        artifacts_dir: None,
        images: Vec::new(),
        cache_root: staging.to_path_buf(),
    };
    // The installer, binaries and checksum files, verified as `up` verifies its cache.
    airgap::prepare(&sources, &request.version, &request.arches).await?;
    let dir = staging.join(request.version.to_string());
    // The cache's record of the install script's hash; the manifest covers it instead.
    let _ = std::fs::remove_file(dir.join(format!("{}.sha256", airgap::INSTALL_SCRIPT)));
    if request.images {
        for &arch in &request.arches {
            let sums_path = dir.join(arch.checksum_asset());
            let sums = std::fs::read_to_string(&sums_path).map_err(io(&sums_path))?;
            let label = format!("{} of {}", arch.checksum_asset(), request.version);
            let asset = ["tar.zst", "tar.gz", "tar"]
                .iter()
                .map(|ext| format!("k3s-airgap-images-{}.{ext}", arch.as_str()))
                .find_map(|asset| checksum_for(&sums, &asset).map(|hash| (asset, hash)));
            let Some((asset, expected)) = asset else {
                return Err(BundleError::NoImages {
                    checksums: label,
                    arch: arch.as_str().to_owned(),
                });
            };
            if dir.join(&asset).is_file() {
                continue;
            }
            airgap::fetch_asset(
                &sources,
                &request.version,
                &asset,
                &dir.join(&asset),
                &expected,
                &label,
            )
            .await?;
        }
    }
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    entries.sort();
    let mut manifest = String::new();
    for name in entries {
        let path = dir.join(&name);
        let sha256 = sha256_file(&path)?;
        let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
        manifest.push_str(&format!("{sha256}  {name}\n"));
        files.push(BundledFile {
            name,
            sha256,
            bytes,
        });
    }
    let manifest_path = dir.join(MANIFEST);
    std::fs::write(&manifest_path, manifest).map_err(io(&manifest_path))?;
    Ok(files)
}
