//! The files a host needs for an air-gapped install (the install script, the k3s binary of its
//! architecture, image tarballs), the script that hashes what a host already has, the one per
//! missing file that receives it on stdin and checks its sha256 on the host before it moves it
//! into place, and what `plan` says of it (from the workstation's cache). The fetch on the
//! workstation is `airgap`.

use std::path::PathBuf;

use super::airgap::{Artifact, Artifacts, cache_root};
use super::arch::K3sArch;
use super::install::AIRGAP_INSTALLER_PATH;
use super::version::K3sVersion;
use crate::inventory::Cluster;
use crate::shell::{shell_quote, with_vars};

/// Where the installer expects the binary with `INSTALL_K3S_SKIP_DOWNLOAD=true`.
pub const BINARY_PATH: &str = "/usr/local/bin/k3s";
/// k3s imports every tarball found here at start (k3s air-gap contract).
pub const IMAGES_DIR: &str = "/var/lib/rancher/k3s/agent/images";

/// One file a host must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Verified file on the workstation.
    pub local: PathBuf,
    /// Absolute path on the host.
    pub remote: String,
    /// Hex sha256 the host's copy must have.
    pub sha256: String,
    pub mode: u32,
}

impl Upload {
    fn of(artifact: &Artifact, remote: String, mode: u32) -> Upload {
        Upload {
            local: artifact.path.clone(),
            remote,
            sha256: artifact.sha256.clone(),
            mode,
        }
    }
}

/// What a host of `arch` needs: installer, binary, that arch's images and the common ones.
/// `None` when the artifacts hold nothing for `arch`.
pub fn uploads(artifacts: &Artifacts, arch: K3sArch) -> Option<Vec<Upload>> {
    let per_arch = artifacts.for_arch(arch)?;
    let mut list = vec![
        Upload::of(
            &artifacts.install_script,
            AIRGAP_INSTALLER_PATH.to_owned(),
            0o755,
        ),
        Upload::of(&per_arch.binary, BINARY_PATH.to_owned(), 0o755),
    ];
    for image in per_arch.images.iter().chain(&artifacts.images) {
        list.push(Upload::of(
            image,
            format!("{IMAGES_DIR}/{}", image.name),
            0o644,
        ));
    }
    Some(list)
}

/// Prints `HASH  PATH` for each file the host has, nothing for the others (one round trip).
pub fn check_script(uploads: &[Upload]) -> String {
    let paths: Vec<String> = uploads.iter().map(|u| shell_quote(&u.remote)).collect();
    format!(
        "set -- {}\n{}",
        paths.join(" "),
        include_str!("sh/airgap-check.sh")
    )
}

/// The uploads the host lacks, or holds with other content, from `check_script`'s output.
pub fn missing<'a>(uploads: &'a [Upload], output: &str) -> Vec<&'a Upload> {
    uploads
        .iter()
        .filter(|u| {
            !output.lines().any(|line| {
                let mut words = line.split_whitespace();
                words.next() == Some(u.sha256.as_str()) && words.next() == Some(u.remote.as_str())
            })
        })
        .collect()
}

/// Receive one file on stdin into a temporary file next to its place, refuse it unless its
/// sha256 on the host is the expected one, then set mode and owner and rename it into place
/// (so a half-written or damaged file never sits at the path the installer or k3s reads).
pub fn put_script(upload: &Upload) -> String {
    with_vars(
        &[
            ("dest", &upload.remote),
            ("want", &upload.sha256),
            ("mode", &format!("{:o}", upload.mode)),
        ],
        include_str!("sh/airgap-put.sh"),
    )
}

/// What `plan` says of an air-gapped cluster: where the release of each architecture would come
/// from (`cached`: already verified on the workstation) and that hosts get only what they lack.
pub fn plan_note(version: &str, hosts: usize, origin: &str, arches: &[(K3sArch, bool)]) -> String {
    let per_arch: Vec<String> = arches
        .iter()
        .map(|(arch, cached)| {
            let state = if *cached { "cached" } else { "to fetch" };
            format!("{} {state}", arch.as_str())
        })
        .collect();
    format!(
        "air-gapped: {hosts} host(s) would get k3s {version} from the workstation ({origin}: {}); \
         each host is sent only the files it lacks, verified on the host",
        per_arch.join(", ")
    )
}

/// [`plan_note`] for `hosts` hosts of `arches` at `version`: the release taken from
/// `[cluster] artifacts_dir`, else the workstation's cache, each architecture `cached` when
/// both its files are there. Reads only the workstation's folders (no download).
pub fn plan_note_for(
    cluster: &Cluster,
    version: &K3sVersion,
    hosts: usize,
    arches: &[K3sArch],
) -> String {
    let (origin, dir) = match &cluster.artifacts_dir {
        Some(dir) => (
            format!("artifacts_dir {}", dir.display()),
            Some(dir.clone()),
        ),
        None => match cache_root() {
            Ok(root) => {
                let dir = root.join(version.to_string());
                (format!("cache {}", dir.display()), Some(dir))
            }
            Err(e) => (format!("no cache folder: {e}"), None),
        },
    };
    let arches: Vec<(K3sArch, bool)> = arches
        .iter()
        .map(|&arch| {
            let cached = dir.as_ref().is_some_and(|d| {
                d.join(arch.binary_asset()).is_file() && d.join(arch.checksum_asset()).is_file()
            });
            (arch, cached)
        })
        .collect();
    plan_note(&version.to_string(), hosts, &origin, &arches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k3s::airgap::ArchArtifacts;

    fn artifact(name: &str, hash: char) -> Artifact {
        Artifact {
            name: name.into(),
            path: PathBuf::from(format!("/cache/{name}")),
            sha256: hash.to_string().repeat(64),
        }
    }

    fn artifacts() -> Artifacts {
        Artifacts {
            install_script: artifact("install.sh", 'a'),
            arches: vec![ArchArtifacts {
                arch: K3sArch::Arm64,
                binary: artifact("k3s-arm64", 'b'),
                images: vec![artifact("k3s-airgap-images-arm64.tar.zst", 'c')],
            }],
            images: vec![artifact("app.tar", 'd')],
            origin: "test".into(),
            downloaded: Vec::new(),
        }
    }

    #[test]
    fn a_host_gets_its_arch_binary_and_all_images() {
        let list = uploads(&artifacts(), K3sArch::Arm64).unwrap();
        let remotes: Vec<&str> = list.iter().map(|u| u.remote.as_str()).collect();
        assert_eq!(
            remotes,
            [
                AIRGAP_INSTALLER_PATH,
                "/usr/local/bin/k3s",
                "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-arm64.tar.zst",
                "/var/lib/rancher/k3s/agent/images/app.tar",
            ]
        );
        assert_eq!(list[1].local, PathBuf::from("/cache/k3s-arm64"));
        assert!(uploads(&artifacts(), K3sArch::Amd64).is_none());
    }

    #[test]
    fn only_absent_or_different_files_are_missing() {
        let list = uploads(&artifacts(), K3sArch::Arm64).unwrap();
        let output = format!(
            "{}  {AIRGAP_INSTALLER_PATH}\n{}  /usr/local/bin/k3s\n{}  /var/lib/rancher/k3s/agent/images/app.tar\n",
            "a".repeat(64),
            "0".repeat(64),
            "d".repeat(64),
        );
        let missing: Vec<&str> = missing(&list, &output)
            .iter()
            .map(|u| u.remote.as_str())
            .collect();
        assert_eq!(
            missing,
            [
                "/usr/local/bin/k3s",
                "/var/lib/rancher/k3s/agent/images/k3s-airgap-images-arm64.tar.zst"
            ]
        );
    }

    #[test]
    fn put_checks_the_hash_before_the_rename() {
        let list = uploads(&artifacts(), K3sArch::Arm64).unwrap();
        let script = put_script(&list[1]);
        let check = script.find("sha256sum").unwrap();
        let rename = script.find("mv -f").unwrap();
        assert!(check < rename);
        assert!(script.starts_with("dest=") && script.contains("\nmode=755\n"));
        assert!(script.contains(&"b".repeat(64)));
    }
}

#[cfg(test)]
mod plan_note_tests {
    use super::*;

    #[test]
    fn plan_note_names_version_origin_and_each_arch_state() {
        let note = plan_note(
            "v1.31.4+k3s1",
            3,
            "cache /root/.cache/edgeops/k3s/v1.31.4+k3s1",
            &[(K3sArch::Amd64, true), (K3sArch::Arm64, false)],
        );
        assert_eq!(
            note,
            "air-gapped: 3 host(s) would get k3s v1.31.4+k3s1 from the workstation \
             (cache /root/.cache/edgeops/k3s/v1.31.4+k3s1: amd64 cached, arm64 to fetch); \
             each host is sent only the files it lacks, verified on the host"
        );
    }
}
