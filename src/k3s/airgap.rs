//! Air-gap artifacts on the workstation: the install script, the k3s binary per architecture and
//! the checksum files of one release, fetched once (reqwest) into a cache or taken from a local
//! artifacts folder, every binary verified against `sha256sum-ARCH.txt` each time it is used.
//! Nothing here touches a host; `phases::airgap` uploads what this prepared.
//!
//! Choices, and why:
//! - Cache: `$XDG_CACHE_HOME/edgeops/k3s/<version>/` (default `~/.cache/...`), files under their
//!   release asset names. A download goes to a temporary file, is verified, then renamed: a file
//!   in the cache was complete and matched when it was written.
//! - A cached (or artifacts-folder) binary that no longer matches its checksum is refused, never
//!   silently replaced: a changed file on the workstation is something to look at (disk fault,
//!   tampering). The message names the file, both hashes and how to start over.
//! - The install script has no published checksum: its hash is recorded next to it at download
//!   (`install.sh.sha256`) so later runs detect a changed cached copy just the same.
//! - URLs as the installer builds them (k3s-io/k3s `install.sh`, `download_hash` /
//!   `download_binary`): `GITHUB_URL/download/VERSION/ASSET`, the `+` of the version encoded.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::arch::K3sArch;
use super::version::K3sVersion;

/// The manifest's name inside a bundle made by `edgeops bundle` (sha256 of every file).
pub const MANIFEST: &str = "edgeops-bundle.sha256";
use crate::inventory::formats::is_image_tarball;

/// The installer's default release base (`GITHUB_URL`).
pub const DEFAULT_DOWNLOAD_URL: &str = "https://github.com/k3s-io/k3s/releases";
/// The install script's name in the cache and in an artifacts folder.
pub const INSTALL_SCRIPT: &str = "install.sh";

#[derive(Debug, thiserror::Error)]
pub enum AirgapError {
    #[error(
        "{file}: sha256 does not match {checksums}: expected {expected}, got {actual}; \
         the file was refused and nothing was installed ({advice})"
    )]
    ChecksumMismatch {
        file: PathBuf,
        checksums: String,
        expected: String,
        actual: String,
        advice: String,
    },
    #[error(
        "download {url}: sha256 does not match {checksums}: expected {expected}, got {actual}; \
         the download was discarded (the mirror serves a damaged or different file)"
    )]
    DownloadMismatch {
        url: String,
        checksums: String,
        expected: String,
        actual: String,
    },
    #[error("{checksums} lists no checksum for {asset}")]
    NoChecksum { checksums: String, asset: String },
    #[error("download {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    #[error("artifacts_dir {} has no {name}: {hint}", dir.display())]
    Missing {
        dir: PathBuf,
        name: String,
        hint: String,
    },
    #[error("no cache folder: neither XDG_CACHE_HOME nor HOME is set")]
    NoCacheDir,
}

fn io_error(path: &Path, e: std::io::Error) -> AirgapError {
    AirgapError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Where the artifacts come from (from the inventory's `[cluster]`).
#[derive(Debug, Clone)]
pub struct Sources {
    /// `install_url`: the install script.
    pub install_url: String,
    /// `download_url` (or the installer's default): the release base.
    pub download_url: String,
    /// `artifacts_dir`: take everything from here, download nothing.
    pub artifacts_dir: Option<PathBuf>,
    /// `images`: tarballs listed in the inventory.
    pub images: Vec<PathBuf>,
    /// The cache root (`.../edgeops/k3s`); versions get a folder each.
    pub cache_root: PathBuf,
}

impl Sources {
    pub fn from_cluster(cluster: &crate::inventory::Cluster) -> Result<Sources, AirgapError> {
        Ok(Sources {
            install_url: cluster.install_url.clone(),
            download_url: cluster
                .download_url
                .clone()
                .unwrap_or_else(|| DEFAULT_DOWNLOAD_URL.to_owned()),
            artifacts_dir: cluster.artifacts_dir.clone(),
            images: cluster.images.clone(),
            cache_root: cache_root()?,
        })
    }
}

/// Download release asset `asset` of `version` from `sources.download_url` to `dest`, kept only
/// when its sha256 is `expected` (the line of `checksums`, named in the error). For `bundle`.
pub async fn fetch_asset(
    sources: &Sources,
    version: &K3sVersion,
    asset: &str,
    dest: &Path,
    expected: &str,
    checksums: &str,
) -> Result<(), AirgapError> {
    let fetch = Fetcher::new(sources, version)?;
    fetch
        .download(&fetch.asset(asset), dest, Some(expected), checksums)
        .await
}

/// `$XDG_CACHE_HOME/edgeops/k3s`, else `$HOME/.cache/edgeops/k3s`.
pub fn cache_root() -> Result<PathBuf, AirgapError> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or(AirgapError::NoCacheDir)?,
        )
        .join(".cache"),
    };
    Ok(base.join("edgeops").join("k3s"))
}

/// One verified file on the workstation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// File name (the release asset name for binaries).
    pub name: String,
    pub path: PathBuf,
    /// Lowercase hex.
    pub sha256: String,
}

/// Everything one release needs on hosts of one architecture.
#[derive(Debug, Clone)]
pub struct ArchArtifacts {
    pub arch: K3sArch,
    pub binary: Artifact,
    /// Image tarballs for this architecture only (`k3s-airgap-images-ARCH.*`).
    pub images: Vec<Artifact>,
}

/// What `prepare` verified: the install script, per-arch binaries and images, images for all.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub install_script: Artifact,
    pub arches: Vec<ArchArtifacts>,
    /// Image tarballs for every host.
    pub images: Vec<Artifact>,
    /// Human words for where they came from (`cache ~/.cache/...`, `artifacts_dir ...`).
    pub origin: String,
    /// Files downloaded by this run (empty when everything came from the cache or folder).
    pub downloaded: Vec<String>,
}

impl Artifacts {
    pub fn for_arch(&self, arch: K3sArch) -> Option<&ArchArtifacts> {
        self.arches.iter().find(|a| a.arch == arch)
    }
}

/// `GITHUB_URL/download/VERSION/ASSET`, with `+` encoded as the installer's URLs have it.
pub fn asset_url(download_url: &str, version: &K3sVersion, asset: &str) -> String {
    format!(
        "{}/download/{}/{asset}",
        download_url.trim_end_matches('/'),
        version.to_string().replace('+', "%2B")
    )
}

/// The hash `checksums` (a `sha256sum-ARCH.txt`: lines `HASH  NAME`) lists for `asset`.
pub fn checksum_for(checksums: &str, asset: &str) -> Option<String> {
    checksums.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let hash = words.next()?;
        let name = words.next()?.trim_start_matches('*');
        (name == asset && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hash.to_ascii_lowercase())
    })
}

/// The architecture an image tarball is for, from a `k3s-airgap-images-ARCH.` name; `None` for
/// any other name (such tarballs go to every host).
pub fn image_arch(name: &str) -> Option<K3sArch> {
    let rest = name.strip_prefix("k3s-airgap-images-")?;
    let arch = rest.split('.').next()?;
    [K3sArch::Amd64, K3sArch::Arm64, K3sArch::Arm, K3sArch::S390x]
        .into_iter()
        .find(|a| a.as_str() == arch)
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, AirgapError> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| io_error(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Fetch, verify and cache (or find and verify in `artifacts_dir`) what `arches` need for
/// `version`. Any mismatch is an error: nothing is uploaded from a run that got one.
pub async fn prepare(
    sources: &Sources,
    version: &K3sVersion,
    arches: &[K3sArch],
) -> Result<Artifacts, AirgapError> {
    let mut prep = match &sources.artifacts_dir {
        Some(dir) => Prep {
            dir: dir.clone(),
            fetch: None,
            downloaded: Vec::new(),
            origin: format!("artifacts_dir {}", dir.display()),
        },
        None => {
            let dir = sources.cache_root.join(version.to_string());
            std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            Prep {
                origin: format!("cache {}", dir.display()),
                dir,
                fetch: Some(Fetcher::new(sources, version)?),
                downloaded: Vec::new(),
            }
        }
    };
    let install_script = prep.install_script().await?;
    let mut per_arch = Vec::new();
    for &arch in arches {
        if per_arch.iter().any(|a: &ArchArtifacts| a.arch == arch) {
            continue;
        }
        per_arch.push(prep.arch(arch).await?);
    }
    let mut images = Vec::new();
    let mut listed: Vec<PathBuf> = sources.images.clone();
    if sources.artifacts_dir.is_some() {
        listed.extend(prep.folder_images()?);
    }
    for path in listed {
        let name = file_name(&path);
        let artifact = Artifact {
            sha256: sha256_file(&path)?,
            name: name.clone(),
            path,
        };
        match image_arch(&name) {
            Some(arch) => {
                if let Some(a) = per_arch.iter_mut().find(|a| a.arch == arch)
                    && !a.images.iter().any(|i| i.name == artifact.name)
                {
                    prep.verify_listed_image(&artifact, arch)?;
                    a.images.push(artifact);
                }
            }
            None => {
                if !images.iter().any(|i: &Artifact| i.name == artifact.name) {
                    images.push(artifact);
                }
            }
        }
    }
    Ok(Artifacts {
        install_script,
        arches: per_arch,
        images,
        origin: prep.origin,
        downloaded: prep.downloaded,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One `prepare` run: where files live and, for the cache, how to fetch missing ones.
struct Prep {
    dir: PathBuf,
    /// `None`: an artifacts folder (nothing is downloaded).
    fetch: Option<Fetcher>,
    downloaded: Vec<String>,
    origin: String,
}

impl Prep {
    fn advice(&self) -> String {
        match self.fetch {
            Some(_) => format!(
                "delete {} to download the release again",
                self.dir.display()
            ),
            None => "replace it with an intact copy of the release asset".to_owned(),
        }
    }

    /// A file of the folder, downloading it first into the cache when missing there.
    /// Returns its path and whether this run downloaded (and so already verified) it.
    async fn file(
        &mut self,
        name: &str,
        url: impl FnOnce(&Fetcher) -> String,
        expected: Option<&str>,
        checksums: &str,
    ) -> Result<PathBuf, AirgapError> {
        let path = self.dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
        let Some(fetch) = &self.fetch else {
            return Err(AirgapError::Missing {
                dir: self.dir.clone(),
                name: name.to_owned(),
                hint: "put the release asset of that name there (from the k3s release page), \
                       or leave out artifacts_dir to have edgeops download it"
                    .to_owned(),
            });
        };
        let url = url(fetch);
        fetch.download(&url, &path, expected, checksums).await?;
        self.downloaded.push(name.to_owned());
        Ok(path)
    }

    async fn install_script(&mut self) -> Result<Artifact, AirgapError> {
        let path = self
            .file(INSTALL_SCRIPT, |f| f.install_url.clone(), None, "")
            .await?;
        let actual = sha256_file(&path)?;
        let record = self.dir.join(format!("{INSTALL_SCRIPT}.sha256"));
        if self.fetch.is_some() {
            match std::fs::read_to_string(&record) {
                Ok(text) => {
                    let expected = text.split_whitespace().next().unwrap_or("").to_owned();
                    if expected != actual {
                        return Err(AirgapError::ChecksumMismatch {
                            file: path,
                            checksums: record.display().to_string(),
                            expected,
                            actual,
                            advice: self.advice(),
                        });
                    }
                }
                Err(_) => {
                    write_atomic(&record, format!("{actual}  {INSTALL_SCRIPT}\n").as_bytes())?
                }
            }
        } else {
            // A folder made by `edgeops bundle`: its manifest vouches for the install script,
            // which the release's checksum files do not cover.
            let manifest = self.dir.join(MANIFEST);
            if let Ok(text) = std::fs::read_to_string(&manifest)
                && let Some(expected) = checksum_for(&text, INSTALL_SCRIPT)
                && expected != actual
            {
                return Err(AirgapError::ChecksumMismatch {
                    file: path,
                    checksums: manifest.display().to_string(),
                    expected,
                    actual,
                    advice: self.advice(),
                });
            }
        }
        Ok(Artifact {
            name: INSTALL_SCRIPT.to_owned(),
            path,
            sha256: actual,
        })
    }

    async fn arch(&mut self, arch: K3sArch) -> Result<ArchArtifacts, AirgapError> {
        let sums_name = arch.checksum_asset();
        let sums_path = self
            .file(&sums_name, |f| f.asset(&sums_name), None, "")
            .await?;
        let sums = std::fs::read_to_string(&sums_path).map_err(|e| io_error(&sums_path, e))?;
        let sums_label = sums_path.display().to_string();
        let asset = arch.binary_asset();
        let expected = checksum_for(&sums, asset).ok_or_else(|| AirgapError::NoChecksum {
            checksums: sums_label.clone(),
            asset: asset.to_owned(),
        })?;
        let path = self
            .file(asset, |f| f.asset(asset), Some(&expected), &sums_label)
            .await?;
        // Verified again even when just downloaded: what is uploaded is what was checked.
        let actual = sha256_file(&path)?;
        if actual != expected {
            return Err(AirgapError::ChecksumMismatch {
                file: path,
                checksums: sums_label,
                expected,
                actual,
                advice: self.advice(),
            });
        }
        Ok(ArchArtifacts {
            arch,
            binary: Artifact {
                name: asset.to_owned(),
                path,
                sha256: actual,
            },
            images: Vec::new(),
        })
    }

    /// Image tarballs lying in the artifacts folder.
    fn folder_images(&self) -> Result<Vec<PathBuf>, AirgapError> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))? {
            let entry = entry.map_err(|e| io_error(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_image_tarball(&name) && entry.path().is_file() {
                found.push(entry.path());
            }
        }
        found.sort();
        Ok(found)
    }

    /// An arch's images tarball listed in that arch's checksum file must match it (the real
    /// `sha256sum-ARCH.txt` lists `k3s-airgap-images-ARCH.tar.*` too).
    fn verify_listed_image(&self, image: &Artifact, arch: K3sArch) -> Result<(), AirgapError> {
        let sums_path = self.dir.join(arch.checksum_asset());
        let Ok(sums) = std::fs::read_to_string(&sums_path) else {
            return Ok(());
        };
        match checksum_for(&sums, &image.name) {
            Some(expected) if expected != image.sha256 => Err(AirgapError::ChecksumMismatch {
                file: image.path.clone(),
                checksums: sums_path.display().to_string(),
                expected,
                actual: image.sha256.clone(),
                advice: "replace it with an intact copy of the release asset".to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// Downloads of one release.
struct Fetcher {
    client: reqwest::Client,
    install_url: String,
    download_url: String,
    version: K3sVersion,
}

impl Fetcher {
    fn new(sources: &Sources, version: &K3sVersion) -> Result<Fetcher, AirgapError> {
        // No overall timeout: a 70 MB binary over an edge link takes its time; a stalled
        // transfer is caught by the read timeout instead.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("edgeops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AirgapError::Download {
                url: sources.download_url.clone(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Fetcher {
            client,
            install_url: sources.install_url.clone(),
            download_url: sources.download_url.clone(),
            version: version.clone(),
        })
    }

    fn asset(&self, asset: &str) -> String {
        asset_url(&self.download_url, &self.version, asset)
    }

    /// Download `url` to `dest` through a temporary file next to it; when `expected` is given
    /// the bytes must hash to it, or nothing is kept.
    async fn download(
        &self,
        url: &str,
        dest: &Path,
        expected: Option<&str>,
        checksums: &str,
    ) -> Result<(), AirgapError> {
        let failed = |reason: String| AirgapError::Download {
            url: url.to_owned(),
            reason,
        };
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(failed(format!("the server answered {}", response.status())));
        }
        let part = PartFile::create(dest)?;
        let mut file = &part.file;
        let mut hasher = Sha256::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed(error_chain(&e)))?
        {
            hasher.update(&chunk);
            file.write_all(&chunk)
                .map_err(|e| io_error(&part.path, e))?;
        }
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(AirgapError::DownloadMismatch {
                url: url.to_owned(),
                checksums: checksums.to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
        part.persist(dest)
    }
}

/// A temporary file next to its destination, removed unless persisted (renamed into place).
struct PartFile {
    path: PathBuf,
    file: std::fs::File,
    kept: bool,
}

impl PartFile {
    fn create(dest: &Path) -> Result<PartFile, AirgapError> {
        let path = dest.with_file_name(format!(
            ".{}.edgeops-part-{}",
            file_name(dest),
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        Ok(PartFile {
            path,
            file,
            kept: false,
        })
    }

    fn persist(mut self, dest: &Path) -> Result<(), AirgapError> {
        self.file.sync_all().map_err(|e| io_error(&self.path, e))?;
        std::fs::rename(&self.path, dest).map_err(|e| io_error(dest, e))?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An error with its sources (reqwest's top level alone says little: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AirgapError> {
    let mut part = PartFile::create(path)?;
    part.file.write_all(bytes).map_err(|e| io_error(path, e))?;
    part.persist(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_urls_encode_the_plus() {
        let v: K3sVersion = "v1.31.4+k3s1".parse().unwrap();
        assert_eq!(
            asset_url("http://m:8080/k3s-io/k3s/releases/", &v, "k3s-arm64"),
            "http://m:8080/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1/k3s-arm64"
        );
    }

    #[test]
    fn checksums_are_found_by_exact_asset_name() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let sums = format!("{a}  k3s\n{b}  k3s-arm64\nshort  k3s-armhf\n");
        assert_eq!(checksum_for(&sums, "k3s"), Some(a));
        assert_eq!(checksum_for(&sums, "k3s-arm64"), Some("b".repeat(64)));
        assert_eq!(checksum_for(&sums, "k3s-armhf"), None);
        assert_eq!(checksum_for(&sums, "k3s-s390x"), None);
    }

    #[test]
    fn image_tarballs_belong_to_an_arch_by_name() {
        assert_eq!(
            image_arch("k3s-airgap-images-arm64.tar.zst"),
            Some(K3sArch::Arm64)
        );
        assert_eq!(
            image_arch("k3s-airgap-images-arm.tar.gz"),
            Some(K3sArch::Arm)
        );
        assert_eq!(image_arch("my-app-images.tar"), None);
    }

    /// An artifacts folder: verified binaries are accepted; a flipped byte is refused naming
    /// the file and both hashes; a missing asset names what to put where.
    #[tokio::test]
    async fn artifacts_folder_is_verified_on_every_use() {
        let dir = tempfile::tempdir().unwrap();
        let bin = b"#!/bin/sh\necho k3s\n";
        let hash = hex::encode(Sha256::digest(bin));
        std::fs::write(dir.path().join("k3s"), bin).unwrap();
        std::fs::write(dir.path().join("install.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(
            dir.path().join("sha256sum-amd64.txt"),
            format!("{hash}  k3s\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("app.tar"), "tar").unwrap();
        let sources = Sources {
            install_url: "http://127.0.0.1:9/install.sh".into(),
            download_url: "http://127.0.0.1:9".into(),
            artifacts_dir: Some(dir.path().to_path_buf()),
            images: Vec::new(),
            cache_root: dir.path().join("unused"),
        };
        let v: K3sVersion = "v1.31.4+k3s1".parse().unwrap();
        let got = prepare(&sources, &v, &[K3sArch::Amd64]).await.unwrap();
        assert_eq!(got.for_arch(K3sArch::Amd64).unwrap().binary.sha256, hash);
        assert_eq!(got.images.len(), 1);
        assert!(got.downloaded.is_empty());

        std::fs::write(dir.path().join("k3s"), b"#!/bin/sh\necho k3z\n").unwrap();
        let err = prepare(&sources, &v, &[K3sArch::Amd64])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("k3s: sha256 does not match"), "{err}");
        assert!(err.contains(&format!("expected {hash}")), "{err}");

        let err = prepare(&sources, &v, &[K3sArch::Arm64])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no sha256sum-arm64.txt"), "{err}");
    }
}
