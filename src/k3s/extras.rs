//! What `[cluster]`'s extras put on hosts besides `config.yaml`: the auto-deploy manifests every
//! server gets in `/var/lib/rancher/k3s/server/manifests/` (k3s applies every `.yaml` there and
//! re-applies it on change, no restart needed).

use crate::inventory::cluster_extras::ClusterExtras;

use super::registries::ManagedFile;

/// k3s's auto-deploy folder on servers.
pub const MANIFESTS_DIR: &str = "/var/lib/rancher/k3s/server/manifests";

/// The sysctl drop-in `forwarding_sysctls` writes on every host.
pub const SYSCTL_PATH: &str = "/etc/sysctl.d/90-edgeops-k3s.conf";

/// Packet forwarding, which the pod network needs (k3s turns it on at start; this keeps it
/// across reboots and before k3s starts), applied at once when written. `-e`: a host without
/// IPv6 lacks the second key.
pub fn sysctl_file() -> ManagedFile {
    ManagedFile {
        path: SYSCTL_PATH.to_owned(),
        contents: b"# Written by edgeops ([cluster] forwarding_sysctls): packet forwarding for the k3s pod network.\n\
net.ipv4.ip_forward = 1\n\
net.ipv6.conf.all.forwarding = 1\n"
            .to_vec(),
        restart: false,
        after_write: Some("sysctl -q -e -p /etc/sysctl.d/90-edgeops-k3s.conf"),
    }
}

/// The inventory's manifests as files for the servers' install step, under their own names.
pub fn manifest_files(extras: &ClusterExtras) -> Result<Vec<ManagedFile>, String> {
    extras
        .manifests
        .iter()
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| format!("{} has no file name", path.display()))?;
            let contents = std::fs::read(path)
                .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
            Ok(ManagedFile {
                path: format!("{MANIFESTS_DIR}/{name}"),
                contents,
                restart: false,
                after_write: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::k3s::install::{InstallSpec, Join};
    use crate::render::Renderer;
    use std::path::Path;

    #[test]
    fn k3s_config_service_env_and_manifests_reach_the_right_hosts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.yaml"), "kind: ConfigMap\n").unwrap();
        let path = dir.path().join("t.toml");
        let inv = crate::inventory::parse(
            "[cluster]\nname = \"t\"\nversion = \"v1.31.4+k3s1\"\nmanifests = [\"app.yaml\"]\n\
             service_env = { HTTPS_PROXY = \"http://proxy:3128\" }\n\
             [cluster.k3s_config]\ncluster-cidr = \"10.42.0.0/16\"\nkubelet-arg = [\"max-pods=50\"]\n\
             [[hosts]]\nname = \"s\"\nrole = \"server\"\n[[hosts]]\nname = \"a\"\nrole = \"agent\"\n",
            &path,
        )
        .unwrap();
        let version = "v1.31.4+k3s1".parse().unwrap();
        let spec = |name: &str| {
            let host = inv.hosts.iter().find(|h| h.name == name).unwrap();
            let join = Join::for_host(&inv, host).unwrap();
            InstallSpec::new(&inv, host, join, &version, &Renderer::builtin()).unwrap()
        };
        let server = spec("s");
        let agent = spec("a");
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&server.config_yaml).unwrap();
        assert_eq!(
            yaml["cluster-cidr"], "10.42.0.0/16",
            "{}",
            server.config_yaml
        );
        assert_eq!(
            yaml["kubelet-arg"][0], "max-pods=50",
            "{}",
            server.config_yaml
        );
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&agent.config_yaml).unwrap();
        assert!(yaml.get("cluster-cidr").is_none(), "{}", agent.config_yaml);
        assert_eq!(
            yaml["kubelet-arg"][0], "max-pods=50",
            "{}",
            agent.config_yaml
        );
        for spec in [&server, &agent] {
            assert!(
                spec.env_file().contains("HTTPS_PROXY=http://proxy:3128"),
                "{}",
                spec.env_file()
            );
        }
        assert_eq!(server.files.len(), 1);
        assert_eq!(
            server.files[0].path,
            "/var/lib/rancher/k3s/server/manifests/app.yaml"
        );
        assert!(!server.files[0].restart);
        assert!(agent.files.is_empty());
        let _ = Path::new("");
    }
}
