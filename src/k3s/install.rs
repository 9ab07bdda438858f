//! What installing k3s on one host means: the installer's environment, the k3s `config.yaml`,
//! a hash of both (so a later run can skip unchanged hosts) and the shell script that runs the
//! installer. Pure: nothing here touches a host.
//!
//! Choices, and why:
//! - Every k3s setting goes into `/etc/rancher/k3s/config.yaml` (keys = flags without `--`),
//!   including the inventory's `server_args` / `agent_args` / per-host `extra_args`, which are
//!   converted from `--key=value` to config keys. `INSTALL_K3S_EXEC` is only `server` or `agent`.
//!   So one file holds the whole node configuration, it is covered by the config hash, and a
//!   changed flag is a changed file (the service restarts), never a different install command.
//! - The join token travels in a 0600 file (`K3S_TOKEN_FILE`), never on a command line or in the
//!   config file: the installer copies `K3S_*` variables into the service's env file, which then
//!   holds only the file's path.
//! - `INSTALL_K3S_VERSION` is always set (the channel was resolved once for the whole run).
//! - The installer is downloaded to a temporary file and then run, rather than piped into `sh`:
//!   a truncated download fails the download step instead of running half a script.

use std::collections::BTreeSet;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::inventory::{Host, Inventory, Role};
use crate::render::{RenderError, Renderer, engine::K3S_CONFIG};
use crate::shell::{shell_quote, with_vars, without_comments};

use super::registries::{ManagedFile, Secrets};
use super::version::K3sVersion;

/// `VERSION SIZE MTIME` of the k3s binary edgeops installed (see `facts`): saves running
/// `k3s --version` on every run. Inside `/etc/rancher/k3s`, so the uninstall scripts remove it.
pub const VERSION_STAMP_PATH: &str = "/etc/rancher/k3s/edgeops-k3s-version";

/// Where k3s reads its configuration (the k3s default, so no `K3S_CONFIG_FILE` is needed).
pub const CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";
/// The 0600 join token file edgeops uploads; `K3S_TOKEN_FILE` points here. Inside
/// `/etc/rancher/k3s` so the k3s uninstall scripts remove it.
pub const TOKEN_FILE_PATH: &str = "/etc/rancher/k3s/edgeops-token";
/// Where edgeops records the config hash of what it last installed on the host.
pub const CONFIG_HASH_PATH: &str = "/etc/rancher/k3s/edgeops-config.sha256";
/// Air-gapped installs run the install script uploaded from the artifacts folder from here.
pub const AIRGAP_INSTALLER_PATH: &str = "/usr/local/share/edgeops/k3s-install.sh";
/// The k3s supervisor port every server listens on.
pub const API_PORT: u16 = 6443;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the inventory has no server: a k3s cluster needs at least one host with role server")]
    NoServer,
    #[error(
        "{host} would be a second server, but [cluster] ha is false: more than one server needs HA \
         (embedded etcd) or a `--datastore-endpoint` in server_args"
    )]
    SecondServerWithoutHa { host: String },
    #[error("{host}: extra argument {arg:?}: {reason}")]
    BadArgument {
        host: String,
        arg: String,
        reason: String,
    },
    #[error("{host}: {source}")]
    Registries {
        host: String,
        #[source]
        source: super::registries::RegistriesError,
    },
    #[error("{host}: [cluster] manifests: {reason}")]
    Manifest { host: String, reason: String },
    #[error("{host}: cannot render the k3s config: {source}")]
    Render {
        host: String,
        #[source]
        source: RenderError,
    },
}

/// How a host enters the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Join {
    /// The first server: it starts the cluster (`cluster-init` when HA, for embedded etcd).
    Init { cluster_init: bool },
    /// Another server, joining through `url` (the first server; one at a time for etcd quorum).
    Server { url: String },
    /// An agent, joining through `url` (the API endpoint).
    Agent { url: String },
}

impl Join {
    /// The default plan from the inventory: the first server in inventory order starts the
    /// cluster; other servers join it directly (the API endpoint may be a VIP or load balancer
    /// that only works once servers exist); agents join the API endpoint.
    pub fn for_host(inventory: &Inventory, host: &Host) -> Result<Join, InstallError> {
        let first = first_server(inventory)?;
        let cluster = &inventory.cluster;
        match host.role {
            Role::Server if host.name == first.name => Ok(Join::Init {
                cluster_init: cluster.ha,
            }),
            Role::Server => {
                let external_datastore = cluster
                    .server_args
                    .iter()
                    .any(|arg| arg.starts_with("--datastore-endpoint"));
                if !cluster.ha && !external_datastore {
                    return Err(InstallError::SecondServerWithoutHa {
                        host: host.name.clone(),
                    });
                }
                Ok(Join::Server {
                    url: server_url(&first.address),
                })
            }
            Role::Agent => Ok(Join::Agent {
                url: server_url(api_endpoint(inventory)?),
            }),
        }
    }

    /// The URL this host joins through, if it joins.
    pub fn url(&self) -> Option<&str> {
        match self {
            Join::Init { .. } => None,
            Join::Server { url } | Join::Agent { url } => Some(url),
        }
    }
}

/// The first host with role server, in inventory order.
pub fn first_server(inventory: &Inventory) -> Result<&Host, InstallError> {
    inventory
        .hosts
        .iter()
        .find(|host| host.role == Role::Server)
        .ok_or(InstallError::NoServer)
}

/// `[cluster] api_endpoint`, or the first server's address.
pub fn api_endpoint(inventory: &Inventory) -> Result<&str, InstallError> {
    match &inventory.cluster.api_endpoint {
        Some(endpoint) => Ok(endpoint),
        None => Ok(&first_server(inventory)?.address),
    }
}

/// `https://HOST:6443` from an address, a `host:port`, a bare or bracketed IPv6 address, or a
/// full `https://` URL (kept as given).
pub fn server_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.starts_with("https://") {
        return endpoint.to_owned();
    }
    let colons = endpoint.matches(':').count();
    if colons > 1 && !endpoint.starts_with('[') {
        // A bare IPv6 address: it needs brackets before a port.
        return format!("https://[{endpoint}]:{API_PORT}");
    }
    let has_port = if endpoint.starts_with('[') {
        endpoint.contains("]:")
    } else {
        colons == 1
    };
    if has_port {
        format!("https://{endpoint}")
    } else {
        format!("https://{endpoint}:{API_PORT}")
    }
}

/// The host part of an endpoint (no scheme, port or brackets), for `tls-san`.
fn endpoint_host(endpoint: &str) -> String {
    let rest = endpoint
        .strip_prefix("https://")
        .unwrap_or(endpoint)
        .trim_end_matches('/');
    let rest = rest.split('/').next().unwrap_or(rest);
    if let Some(bracketed) = rest.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or(bracketed).to_owned();
    }
    if rest.matches(':').count() == 1 {
        return rest.split(':').next().unwrap_or(rest).to_owned();
    }
    rest.to_owned()
}

/// Everything needed to install (or check) k3s on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallSpec {
    pub host: String,
    pub role: Role,
    pub join: Join,
    /// The `INSTALL_K3S_VERSION` value: a release tag, or for previews a placeholder.
    pub version: String,
    /// The installer's environment, in a fixed order. Holds no secret.
    pub env: Vec<(String, String)>,
    /// The rendered `/etc/rancher/k3s/config.yaml`. Holds no secret.
    pub config_yaml: String,
    /// sha256 (hex) of `config_yaml` and `env`: what edgeops writes and runs on the host.
    pub config_hash: String,
    /// Further files the install step writes (root, 0600) and restarts k3s for when they
    /// change: `registries.yaml` and its TLS files. Empty without `[registries]`; may hold
    /// secrets (they travel on stdin only).
    pub files: Vec<ManagedFile>,
    /// A server that copies its admin kubeconfig to the login user (`user_kubeconfig`).
    pub user_kubeconfig: bool,
    /// Shell lines that open the k3s ports when ufw or firewalld is active (`open_firewall`).
    pub firewall: Option<String>,
    installer: Installer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Installer {
    /// Download the install script from this URL on the host.
    Download(String),
    /// Run the script already uploaded to this path (air-gap).
    Uploaded(&'static str),
}

impl InstallSpec {
    /// The spec for `host`, pinned to `version`.
    pub fn new(
        inventory: &Inventory,
        host: &Host,
        join: Join,
        version: &K3sVersion,
        renderer: &Renderer,
    ) -> Result<InstallSpec, InstallError> {
        Self::build(
            inventory,
            host,
            join,
            version.to_string(),
            renderer,
            Secrets::Resolve,
        )
    }

    /// A spec whose version is not resolved yet (for `edgeops render`, which works offline):
    /// `version_text` stands in for the tag, e.g. `<k3s version from channel stable>`.
    pub fn unresolved(
        inventory: &Inventory,
        host: &Host,
        join: Join,
        version_text: &str,
        renderer: &Renderer,
    ) -> Result<InstallSpec, InstallError> {
        Self::build(
            inventory,
            host,
            join,
            version_text.to_owned(),
            renderer,
            Secrets::Masked,
        )
    }

    fn build(
        inventory: &Inventory,
        host: &Host,
        join: Join,
        version: String,
        renderer: &Renderer,
        secrets: Secrets,
    ) -> Result<InstallSpec, InstallError> {
        let cluster = &inventory.cluster;
        let mut files = match &inventory.registries {
            Some(registries) => {
                super::registries::files(registries, secrets).map_err(|source| {
                    InstallError::Registries {
                        host: host.name.clone(),
                        source,
                    }
                })?
            }
            None => Vec::new(),
        };
        if cluster.extras.forwarding_sysctls {
            files.push(super::extras::sysctl_file());
        }
        if host.role == Role::Server {
            files.extend(
                super::extras::manifest_files(&cluster.extras).map_err(|reason| {
                    InstallError::Manifest {
                        host: host.name.clone(),
                        reason,
                    }
                })?,
            );
        }
        let context = config_context(inventory, host, &join)?;
        let config_yaml =
            renderer
                .render(K3S_CONFIG, &context)
                .map_err(|source| InstallError::Render {
                    host: host.name.clone(),
                    source,
                })?;

        let mut env = vec![
            ("INSTALL_K3S_VERSION".to_owned(), version.clone()),
            ("INSTALL_K3S_EXEC".to_owned(), host.role.as_str().to_owned()),
            (
                "INSTALL_K3S_CHANNEL_URL".to_owned(),
                cluster.channel_url.clone(),
            ),
        ];
        if let Some(download_url) = &cluster.download_url {
            env.push(("GITHUB_URL".to_owned(), download_url.clone()));
        }
        if cluster.airgap {
            env.push(("INSTALL_K3S_SKIP_DOWNLOAD".to_owned(), "true".to_owned()));
        }
        if let Some(url) = join.url() {
            env.push(("K3S_URL".to_owned(), url.to_owned()));
        }
        env.push(("K3S_TOKEN_FILE".to_owned(), TOKEN_FILE_PATH.to_owned()));
        // Proxy and CONTAINERD_* settings: the installer copies them into the service env file.
        env.extend(cluster.extras.service_env.iter().cloned());

        let installer = if cluster.airgap {
            Installer::Uploaded(AIRGAP_INSTALLER_PATH)
        } else {
            Installer::Download(cluster.install_url.clone())
        };
        let user_kubeconfig = host.role == Role::Server && cluster.extras.user_kubeconfig;
        let mut config_hash = config_hash(&config_yaml, &env, &files);
        if user_kubeconfig {
            // Part of what the install step does: turning it on must reach converged servers.
            config_hash = hex::encode(Sha256::digest(format!("{config_hash}\0user-kubeconfig")));
        }
        Ok(InstallSpec {
            host: host.name.clone(),
            role: host.role,
            join,
            version,
            env,
            config_yaml,
            config_hash,
            files,
            user_kubeconfig,
            firewall: cluster.extras.open_firewall.then(|| {
                let args: Vec<&String> = cluster
                    .extras
                    .k3s_config
                    .iter()
                    .map(|(_, arg)| arg)
                    .chain(&cluster.server_args)
                    .chain(&host.extra_args)
                    .collect();
                let cidr = |flag: &str, default: &'static str| {
                    args.iter()
                        .find_map(|a| a.strip_prefix(&format!("--{flag}=")))
                        .map(str::to_owned)
                        .unwrap_or_else(|| default.to_owned())
                };
                super::firewall::script(
                    host.role,
                    cluster.ha,
                    &cidr("cluster-cidr", super::firewall::DEFAULT_CLUSTER_CIDR),
                    &cidr("service-cidr", super::firewall::DEFAULT_SERVICE_CIDR),
                )
            }),
            installer,
        })
    }

    /// The environment as `KEY=value` lines (for `edgeops render` and logs; holds no secret).
    pub fn env_file(&self) -> String {
        self.env
            .iter()
            .map(|(key, value)| format!("{key}={}\n", shell_quote(value)))
            .collect()
    }

    /// A POSIX sh script that runs the k3s installer as root with this spec's environment.
    /// The caller runs it with sudo (as the inventory says) after uploading `config_yaml` to
    /// `CONFIG_PATH` and the token to `TOKEN_FILE_PATH`; it holds no secret.
    pub fn install_script(&self) -> String {
        let assignments: Vec<String> = self
            .env
            .iter()
            .map(|(key, value)| format!("{key}={}", shell_quote(value)))
            .collect();
        let run = format!("env {} sh", assignments.join(" "));
        match &self.installer {
            Installer::Uploaded(path) => {
                format!("set -eu\n{run} {}\n", shell_quote(path))
            }
            // The downloaded installer runs through `run_installer`: the environment stays
            // generated text, the download a static, shellchecked file.
            Installer::Download(url) => format!(
                "run_installer() {{ {run} \"$1\"; }}\n{}",
                with_vars(
                    &[("url", url)],
                    &without_comments(include_str!("sh/install-download.sh"))
                )
            ),
        }
    }
}

/// Hash of exactly what edgeops writes and runs: the config file bytes and the installer env
/// (which includes the version), and the further files (registries). A version change or any
/// setting change changes the hash. Without further files the hash is what it was before they
/// existed, so upgrading edgeops does not reconfigure every host.
fn config_hash(config_yaml: &str, env: &[(String, String)], files: &[ManagedFile]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"edgeops-k3s-config-v1\n");
    hasher.update(b"config.yaml\n");
    hasher.update(config_yaml.as_bytes());
    hasher.update(b"\0env\n");
    for (key, value) in env {
        hasher.update(key.as_bytes());
        hasher.update(b"=");
        hasher.update(value.as_bytes());
        hasher.update(b"\n");
    }
    for file in files {
        hasher.update(b"\0file\n");
        hasher.update(file.path.as_bytes());
        hasher.update(b"\n");
        hasher.update(Sha256::digest(&file.contents));
    }
    hex::encode(hasher.finalize())
}

/// The node labels (`key=value`) and taints (`key=value:Effect`) `host` is configured with: its
/// own plus any `--node-label` / `--node-taint` from the cluster's role args and its extra args.
pub fn node_labels_and_taints(
    inventory: &Inventory,
    host: &Host,
) -> Result<(Vec<String>, Vec<String>), InstallError> {
    // The join plan does not affect labels or taints; any value will do here.
    let context = config_context(
        inventory,
        host,
        &Join::Init {
            cluster_init: false,
        },
    )?;
    Ok((context.node_labels, context.node_taints))
}

/// The variables of `templates/k3s/config.yaml.j2` (documented in docs/TEMPLATES.md).
#[derive(Debug, Serialize)]
struct ConfigContext {
    cluster: String,
    host: String,
    role: &'static str,
    node_name: String,
    cluster_init: bool,
    server_url: Option<String>,
    tls_san: Vec<String>,
    node_labels: Vec<String>,
    node_taints: Vec<String>,
    disable: Vec<String>,
    write_kubeconfig_mode: Option<String>,
    extra: Vec<ConfigEntry>,
}

/// One k3s setting from the inventory's extra arguments.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct ConfigEntry {
    key: String,
    /// A boolean flag given without a value (`--secrets-encryption`): rendered `key: true`.
    flag: bool,
    /// Rendered as a YAML list (repeated, or a flag k3s documents as repeatable).
    list: bool,
    values: Vec<String>,
}

/// Keys edgeops sets from inventory fields; an extra argument may not set them behind its back.
const RESERVED_KEYS: &[(&str, &str)] = &[
    ("node-name", "the host's node_name"),
    (
        "server",
        "the cluster's join plan (first server / api_endpoint)",
    ),
    ("token", "[cluster] token"),
    ("token-file", "[cluster] token"),
    ("agent-token", "[cluster] token"),
    ("cluster-init", "[cluster] ha"),
    ("config", "edgeops's config file"),
];

/// Flags that k3s repeats; extra arguments for them are appended to the inventory's lists.
const MERGED_LIST_KEYS: &[&str] = &["tls-san", "node-label", "node-taint", "disable"];

/// Other repeatable flags: rendered as lists even when given once.
fn is_list_key(key: &str) -> bool {
    // `kubelet-arg`, `kube-apiserver-arg`, `etcd-arg`, ... and the address lists.
    key.ends_with("-arg") || matches!(key, "node-ip" | "node-external-ip")
}

fn config_context(
    inventory: &Inventory,
    host: &Host,
    join: &Join,
) -> Result<ConfigContext, InstallError> {
    let cluster = &inventory.cluster;
    let is_server = host.role == Role::Server;

    let mut tls_san = Vec::new();
    let mut disable = Vec::new();
    if is_server {
        // The name clients use (api endpoint or first server) and this server's own address must
        // be in the certificate, or a kubeconfig pointing at a DNS name fails TLS.
        tls_san.push(endpoint_host(api_endpoint(inventory)?));
        tls_san.push(endpoint_host(&host.address));
        tls_san.extend(cluster.tls_san.iter().cloned());
        disable.extend(cluster.disable.iter().cloned());
    }
    let mut node_labels: Vec<String> = host
        .labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mut node_taints = host.taints.clone();

    let role_args = if is_server {
        &cluster.server_args
    } else {
        &cluster.agent_args
    };
    // `[cluster.k3s_config]` first (server-only keys only for servers), then the role's and
    // the host's own arguments, so those can extend its lists.
    let free_form = cluster
        .extras
        .k3s_config
        .iter()
        .filter(|(scope, _)| {
            is_server || *scope == crate::inventory::k3s_flags::FlagScope::AllNodes
        })
        .map(|(_, arg)| arg);
    let args: Vec<String> = free_form
        .chain(role_args)
        .chain(&host.extra_args)
        .cloned()
        .collect();
    let mut extra: Vec<ConfigEntry> = Vec::new();
    for (key, value) in parse_args(&host.name, &args)? {
        let bad = |reason: String| InstallError::BadArgument {
            host: host.name.clone(),
            arg: format!("--{key}"),
            reason,
        };
        if let Some((_, field)) = RESERVED_KEYS.iter().find(|(reserved, _)| *reserved == key) {
            return Err(bad(format!("edgeops sets this itself from {field}")));
        }
        if key == "write-kubeconfig-mode" && cluster.kubeconfig_mode.is_some() {
            return Err(bad(
                "[cluster] kubeconfig_mode already sets it; keep one of the two".to_owned(),
            ));
        }
        if MERGED_LIST_KEYS.contains(&key.as_str()) {
            let value = value.ok_or_else(|| bad("needs a value".to_owned()))?;
            match key.as_str() {
                "tls-san" if is_server => tls_san.push(value),
                "disable" if is_server => disable.push(value),
                "node-label" => node_labels.push(value),
                "node-taint" => node_taints.push(value),
                _ => return Err(bad("is a server-only flag".to_owned())),
            }
            continue;
        }
        match extra.iter_mut().find(|entry| entry.key == key) {
            Some(entry) => {
                let value =
                    value.ok_or_else(|| bad("given both with and without a value".to_owned()))?;
                if entry.flag {
                    return Err(bad("given both with and without a value".to_owned()));
                }
                entry.values.push(value);
                entry.list = true;
            }
            None => extra.push(ConfigEntry {
                list: is_list_key(&key),
                flag: value.is_none(),
                values: value.into_iter().collect(),
                key,
            }),
        }
    }

    Ok(ConfigContext {
        cluster: cluster.name.clone(),
        host: host.name.clone(),
        role: host.role.as_str(),
        node_name: host.node_name.clone(),
        cluster_init: matches!(join, Join::Init { cluster_init: true }),
        server_url: join.url().map(str::to_owned),
        tls_san: dedup(tls_san),
        node_labels: dedup(node_labels),
        node_taints: dedup(node_taints),
        disable: dedup(disable),
        write_kubeconfig_mode: if is_server {
            cluster.kubeconfig_mode.clone()
        } else {
            None
        },
        extra,
    })
}

/// Keep the first occurrence of each value, in order.
fn dedup(values: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    values
        .into_iter()
        .filter(|value| seen.insert(value.clone()))
        .collect()
}

/// `--key=value`, `--key value` (two elements) and `--flag` into `(key, Some(value) | None)`.
fn parse_args(host: &str, args: &[String]) -> Result<Vec<(String, Option<String>)>, InstallError> {
    let mut parsed = Vec::new();
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        let bad = |reason: &str| InstallError::BadArgument {
            host: host.to_owned(),
            arg: arg.clone(),
            reason: reason.to_owned(),
        };
        let Some(body) = arg.strip_prefix("--") else {
            return Err(bad(if arg.starts_with('-') {
                "use the long form (--flag), which is also the config file key"
            } else {
                "a value without a --flag before it"
            }));
        };
        let (key, value) = match body.split_once('=') {
            Some((key, value)) => (key, Some(value.to_owned())),
            None => match iter.peek() {
                Some(next) if !next.starts_with('-') => (body, iter.next().cloned()),
                _ => (body, None),
            },
        };
        let valid_key = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_key {
            return Err(bad("flag names are lowercase letters, digits and dashes"));
        }
        parsed.push((key.to_owned(), value));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k3s::test_inventory::{agent, ha_inventory, pi_inventory};
    use std::path::Path;

    fn v(text: &str) -> K3sVersion {
        text.parse().unwrap()
    }

    fn spec(inventory: &Inventory, name: &str) -> InstallSpec {
        let host = inventory.hosts.iter().find(|h| h.name == name).unwrap();
        let join = Join::for_host(inventory, host).unwrap();
        InstallSpec::new(
            inventory,
            host,
            join,
            &v("v1.31.4+k3s1"),
            &Renderer::builtin(),
        )
        .unwrap()
    }

    #[test]
    fn server_urls_from_every_endpoint_shape() {
        for (endpoint, url) in [
            ("10.0.0.1", "https://10.0.0.1:6443"),
            ("k3s.lan:7443", "https://k3s.lan:7443"),
            ("fd00::1", "https://[fd00::1]:6443"),
            ("[fd00::1]", "https://[fd00::1]:6443"),
            ("[fd00::1]:7443", "https://[fd00::1]:7443"),
            ("https://vip.lan:6443/", "https://vip.lan:6443"),
        ] {
            assert_eq!(server_url(endpoint), url, "{endpoint}");
        }
        for (endpoint, host) in [
            ("10.0.0.1", "10.0.0.1"),
            ("k3s.lan:7443", "k3s.lan"),
            ("fd00::1", "fd00::1"),
            ("[fd00::1]:7443", "fd00::1"),
            ("https://vip.lan:6443/", "vip.lan"),
        ] {
            assert_eq!(endpoint_host(endpoint), host, "{endpoint}");
        }
    }

    #[test]
    fn join_plan_first_server_inits_others_join() {
        let inventory = ha_inventory();
        let joins: Vec<Join> = inventory
            .hosts
            .iter()
            .map(|host| Join::for_host(&inventory, host).unwrap())
            .collect();
        assert_eq!(joins[0], Join::Init { cluster_init: true });
        assert_eq!(
            joins[1],
            Join::Server {
                url: "https://10.1.0.11:6443".into()
            }
        );
        // Agents use the API endpoint (a VIP here), servers the first server directly.
        assert_eq!(
            joins[3],
            Join::Agent {
                url: "https://k3s-vip.lab:6443".into()
            }
        );

        let mut single = pi_inventory();
        assert_eq!(
            Join::for_host(&single, &single.hosts[0].clone()).unwrap(),
            Join::Init {
                cluster_init: false
            }
        );
        single.hosts[1].role = Role::Server;
        let err = Join::for_host(&single, &single.hosts[1].clone()).unwrap_err();
        assert!(
            matches!(err, InstallError::SecondServerWithoutHa { .. }),
            "{err}"
        );
        single.hosts.retain(|h| h.role == Role::Agent);
        assert!(matches!(
            Join::for_host(&single, &single.hosts[0].clone()),
            Err(InstallError::NoServer)
        ));
    }

    #[test]
    fn env_pins_the_version_and_keeps_the_token_in_a_file() {
        let inventory = pi_inventory();
        let server = spec(&inventory, "pi-01");
        assert_eq!(
            server.env,
            [
                ("INSTALL_K3S_VERSION", "v1.31.4+k3s1"),
                ("INSTALL_K3S_EXEC", "server"),
                (
                    "INSTALL_K3S_CHANNEL_URL",
                    "https://update.k3s.io/v1-release/channels"
                ),
                ("K3S_TOKEN_FILE", TOKEN_FILE_PATH),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        let agent = spec(&inventory, "pi-02");
        assert!(
            agent
                .env
                .contains(&("INSTALL_K3S_EXEC".into(), "agent".into()))
        );
        assert!(
            agent
                .env
                .contains(&("K3S_URL".into(), "https://10.0.0.11:6443".into()))
        );
        assert!(!agent.install_script().contains("K3S_TOKEN="));
    }

    #[test]
    fn mirrors_and_airgap_change_the_env_and_the_script() {
        let mut inventory = pi_inventory();
        inventory.cluster.download_url = Some("https://mirror.lab/k3s/releases".into());
        inventory.cluster.airgap = true;
        let server = spec(&inventory, "pi-01");
        assert!(server.env.contains(&(
            "GITHUB_URL".into(),
            "https://mirror.lab/k3s/releases".into()
        )));
        assert!(
            server
                .env
                .contains(&("INSTALL_K3S_SKIP_DOWNLOAD".into(), "true".into()))
        );
        assert_eq!(
            server.install_script(),
            "set -eu\nenv INSTALL_K3S_VERSION=v1.31.4+k3s1 INSTALL_K3S_EXEC=server \
             INSTALL_K3S_CHANNEL_URL=https://update.k3s.io/v1-release/channels \
             GITHUB_URL=https://mirror.lab/k3s/releases INSTALL_K3S_SKIP_DOWNLOAD=true \
             K3S_TOKEN_FILE=/etc/rancher/k3s/edgeops-token sh /usr/local/share/edgeops/k3s-install.sh\n"
        );
    }

    #[test]
    fn the_download_script_is_valid_sh_and_quotes_the_url() {
        let mut inventory = pi_inventory();
        inventory.cluster.install_url = "https://get.k3s.io/?x='1'".into();
        let script = spec(&inventory, "pi-02").install_script();
        assert!(
            script.contains(r#"url='https://get.k3s.io/?x='\''1'\'''"#),
            "{script}"
        );
        assert!(
            script.contains(r#"curl -sfL --retry 3 -o "$installer" "$url""#),
            "{script}"
        );
        let status = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success(), "sh -n rejected:\n{script}");
    }

    #[test]
    fn the_download_script_runs_the_downloaded_installer_with_the_env_then_removes_it() {
        assert!(
            std::process::Command::new("curl")
                .arg("--version")
                .output()
                .is_ok(),
            "this test needs curl (it downloads the fake installer from a file:// URL)"
        );
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-install.sh");
        // The fake installer records what the real one would read, and where it ran from.
        std::fs::write(
            &fake,
            "printf '%s\\n' \"$INSTALL_K3S_VERSION\" \"$INSTALL_K3S_EXEC\" \"$K3S_URL\" \"$K3S_TOKEN_FILE\" > \"$OUT\"\n\
             printf '%s' \"$0\" > \"$OUT.self\"\n",
        )
        .unwrap();
        let mut inventory = pi_inventory();
        inventory.cluster.install_url = format!("file://{}", fake.display());
        let script = spec(&inventory, "pi-02").install_script();
        let out = dir.path().join("seen");
        let status = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("OUT", &out)
            .env("TMPDIR", dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "script failed:\n{script}");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("v1.31.4+k3s1\nagent\nhttps://10.0.0.11:6443\n{TOKEN_FILE_PATH}\n")
        );
        let downloaded = std::fs::read_to_string(dir.path().join("seen.self")).unwrap();
        assert!(
            downloaded.starts_with(dir.path().to_str().unwrap()),
            "{downloaded}"
        );
        assert!(
            !Path::new(&downloaded).exists(),
            "the downloaded installer is removed"
        );

        // A failing download fails the script before anything runs.
        inventory.cluster.install_url = format!("file://{}/missing.sh", dir.path().display());
        std::fs::remove_file(&out).unwrap();
        let script = spec(&inventory, "pi-02").install_script();
        let status = std::process::Command::new("sh")
            .args(["-c", &script])
            .env("OUT", &out)
            .env("TMPDIR", dir.path())
            .status()
            .unwrap();
        assert!(!status.success());
        assert!(!out.exists());
    }

    #[test]
    fn config_hash_changes_with_config_and_version_only() {
        let inventory = pi_inventory();
        let a = spec(&inventory, "pi-02");
        assert_eq!(a.config_hash.len(), 64);
        assert_eq!(a.config_hash, spec(&inventory, "pi-02").config_hash);

        let host = &inventory.hosts[1];
        let join = Join::for_host(&inventory, host).unwrap();
        let newer = InstallSpec::new(
            &inventory,
            host,
            join,
            &v("v1.31.5+k3s1"),
            &Renderer::builtin(),
        )
        .unwrap();
        assert_ne!(a.config_hash, newer.config_hash);

        let mut relabelled = inventory.clone();
        relabelled.hosts[1].labels.insert("zone".into(), "b".into());
        assert_ne!(a.config_hash, spec(&relabelled, "pi-02").config_hash);
    }

    #[test]
    fn extra_args_become_config_keys() {
        let mut inventory = pi_inventory();
        inventory.cluster.agent_args = vec![
            "--kubelet-arg=max-pods=50".into(),
            "--node-label".into(),
            "tier=edge".into(),
            "--protect-kernel-defaults".into(),
        ];
        inventory.hosts[1].extra_args = vec![
            "--kubelet-arg=eviction-hard=memory.available<100Mi".into(),
            "--flannel-iface=eth1".into(),
        ];
        let yaml = spec(&inventory, "pi-02").config_yaml;
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(
            parsed["kubelet-arg"],
            serde_yaml_ng::from_str::<serde_yaml_ng::Value>(
                "[max-pods=50, eviction-hard=memory.available<100Mi]"
            )
            .unwrap()
        );
        assert_eq!(
            parsed["protect-kernel-defaults"],
            serde_yaml_ng::Value::Bool(true)
        );
        assert_eq!(parsed["flannel-iface"], "eth1");
        let labels = parsed["node-label"].as_sequence().unwrap();
        assert!(labels.contains(&"tier=edge".into()), "{yaml}");
    }

    #[test]
    fn extra_args_that_fight_the_inventory_are_refused() {
        for (args, message) in [
            (
                vec!["--token=abc"],
                "pi-02: extra argument \"--token\": edgeops sets this itself from [cluster] token",
            ),
            (
                vec!["-t", "x"],
                "pi-02: extra argument \"-t\": use the long form (--flag), which is also the config file key",
            ),
            (
                vec!["--tls-san=x"],
                "pi-02: extra argument \"--tls-san\": is a server-only flag",
            ),
            (
                vec!["--Bad=1"],
                "pi-02: extra argument \"--Bad=1\": flag names are lowercase letters, digits and dashes",
            ),
            (
                vec!["--a", "--a=1"],
                "pi-02: extra argument \"--a\": given both with and without a value",
            ),
        ] {
            let mut inventory = pi_inventory();
            inventory.hosts[1].extra_args = args.iter().map(|s| s.to_string()).collect();
            let host = inventory.hosts[1].clone();
            let join = Join::for_host(&inventory, &host).unwrap();
            let err = InstallSpec::new(
                &inventory,
                &host,
                join,
                &v("v1.31.4+k3s1"),
                &Renderer::builtin(),
            )
            .unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn shell_quoting_survives_a_round_trip_through_sh() {
        for text in ["plain", "with space", "it's", "$(rm -rf /)", "", "a\"b"] {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {}", shell_quote(text))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), text);
        }
    }

    #[test]
    fn a_new_agent_gets_the_api_endpoint_in_its_config() {
        let mut inventory = pi_inventory();
        inventory.hosts.push(agent("pi-09", "10.0.0.19"));
        let yaml = spec(&inventory, "pi-09").config_yaml;
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(parsed["server"], "https://10.0.0.11:6443");
        assert_eq!(parsed["node-name"], "pi-09");
        assert!(parsed.get("tls-san").is_none());
    }
}
