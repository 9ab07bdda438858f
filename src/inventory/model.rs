//! The validated inventory: defaults applied, ranges expanded, roles resolved. Nothing downstream sees raw TOML.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::k3s_flags::FlagScope;

/// A whole validated inventory, hosts in inventory order (ranges expanded in place).
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    pub cluster: Cluster,
    /// Fan-out width for every phase (`[ssh] concurrency`), overridable by `--concurrency`.
    pub concurrency: usize,
    pub hosts: Vec<Host>,
    pub gitlab: Option<GitLab>,
    /// `[registries]`: rendered into k3s's `registries.yaml` on every host.
    pub registries: Option<Registries>,
    /// `[ci]`: the cluster's jobs in a pipeline written by `edgeops ci`.
    pub ci: CiSettings,
}

/// `[ci]`: settings only `edgeops ci` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiSettings {
    /// Tag of the GitLab runner inside the site's network that runs this cluster's `plan` and
    /// `up` jobs; `None`: any runner of the project.
    pub runner_tag: Option<String>,
}

/// `[cluster]`: what k3s cluster to build.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    /// The channel to resolve (default `stable`) unless `version` pins a release; the inventory
    /// rejects setting both, so when `version` is `Some` this is just the default.
    pub channel: String,
    pub version: Option<String>,
    pub token: SecretSource,
    /// Address agents and kubeconfig use to reach the API (defaults to the first server's address).
    pub api_endpoint: Option<String>,
    pub tls_san: Vec<String>,
    pub server_args: Vec<String>,
    pub agent_args: Vec<String>,
    /// Packaged components to disable (`traefik`, `servicelb`, ...).
    pub disable: Vec<String>,
    /// URL of the k3s install script (`https://get.k3s.io` by default).
    pub install_url: String,
    /// Channel server (`INSTALL_K3S_CHANNEL_URL`).
    pub channel_url: String,
    /// Release download base (`GITHUB_URL`), for mirrored sites; `None` = the installer's default.
    pub download_url: Option<String>,
    pub ha: bool,
    /// Hosts cannot download: edgeops fetches the install script, binaries and checksums once
    /// on the workstation (or takes them from `artifacts_dir`) and uploads them. Set by
    /// `airgap = true` or by giving `artifacts_dir`.
    pub airgap: bool,
    /// Workstation folder with pre-downloaded artifacts for air-gapped installs (release asset
    /// names: `install.sh`, `k3s`, `k3s-arm64`, `sha256sum-amd64.txt`, image tarballs).
    pub artifacts_dir: Option<PathBuf>,
    /// Image tarballs uploaded to every host's `/var/lib/rancher/k3s/agent/images/` in
    /// air-gapped installs (a `k3s-airgap-images-ARCH.*` file only to hosts of that arch).
    pub images: Vec<PathBuf>,
    /// `write-kubeconfig-mode` on servers.
    pub kubeconfig_mode: Option<String>,
    /// Age after which the cluster lock of a run that never released it is taken over
    /// (`lock_expiry`, default [`DEFAULT_LOCK_EXPIRY`]).
    pub lock_expiry: std::time::Duration,
    /// How long a k3s service may take to start once the installer (or a restart) started it:
    /// a join k3s refuses hangs forever, so edgeops stops it after this (`join_timeout`).
    pub join_timeout: Duration,
    /// Free-form k3s config, manifests, service env, templates_dir (`[cluster]` extras).
    pub extras: ClusterExtras,
}

/// How long a cluster lock holds when its run never releases it (a crash, a lost workstation).
pub const DEFAULT_LOCK_EXPIRY: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// `[cluster] join_timeout` when not given: a Raspberry Pi joins in 30-90 s.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Where a secret comes from. Secrets are never inline in the inventory.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    /// Read from this environment variable at run time.
    Env(String),
    /// Read from this file (first line, trimmed) at run time.
    File(PathBuf),
    /// Not given: generated (join token) or read back from the first server.
    Generate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }
}

/// One board, after defaults, group settings and per-host overrides are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Inventory name (unique), used in every message.
    pub name: String,
    /// Where to connect (IP or DNS name).
    pub address: String,
    pub role: Role,
    pub groups: Vec<String>,
    /// Kubernetes node name (defaults to `name`).
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    /// `key=value:Effect` strings.
    pub taints: Vec<String>,
    /// Extra k3s flags for this host only (after the cluster's server/agent args).
    pub extra_args: Vec<String>,
    pub ssh: SshSettings,
}

/// How to reach one host over SSH; every field can be set in `[ssh]`, a group, or a host.
#[derive(Debug, Clone, PartialEq)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    /// Private keys to try, in order (`~` expanded).
    pub identity_files: Vec<PathBuf>,
    /// Also try keys held by ssh-agent (`SSH_AUTH_SOCK`).
    pub use_agent: bool,
    /// Extra known_hosts file (besides `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    pub jump: Option<JumpHost>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub sudo: Sudo,
    /// Env var holding the passphrase of encrypted identity files.
    pub passphrase_env: Option<String>,
    /// Which of these some inventory layer set; the others are defaults that the user's
    /// ssh_config may override.
    pub explicit: SshExplicit,
}

/// The SSH settings an inventory layer (`[ssh]`, a group or the host) set explicitly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SshExplicit {
    pub user: bool,
    pub port: bool,
    pub identity_files: bool,
    pub agent: bool,
    pub known_hosts: bool,
    pub jump: bool,
    pub connect_timeout: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Unknown or changed key = refuse (OpenSSH `StrictHostKeyChecking yes`).
    Strict,
    /// Learn unknown keys, refuse changed ones.
    AcceptNew,
    /// Accept anything (loudly warned).
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sudo {
    /// Commands already run as root (or need no root).
    None,
    /// `sudo -n`.
    Passwordless,
    /// Password read from this env var, fed on stdin (`sudo -S`).
    Password { env: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    pub user: Option<String>,
    pub address: String,
    pub port: u16,
}

/// `[gitlab]`: where to register the agent and runner.
#[derive(Debug, Clone, PartialEq)]
pub struct GitLab {
    pub url: String,
    /// Project (path or numeric id) that holds the agent config.
    pub project: String,
    /// Group for a group runner / group ci_access.
    pub group: Option<String>,
    pub agent_name: String,
    pub token: SecretSource,
    pub runner: RunnerSettings,
    /// Folder whose templates override the built-in ones.
    pub templates_dir: Option<PathBuf>,
    /// KAS address for the agent chart (derived from `url` when absent).
    pub kas_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunnerSettings {
    pub enabled: bool,
    pub runner_type: RunnerType,
    pub tags: Vec<String>,
    pub run_untagged: bool,
    pub concurrent: u32,
    pub privileged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerType {
    Instance,
    Group,
    Project,
}

/// The validated extras of `[cluster]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterExtras {
    /// `[cluster.k3s_config]` as k3s flags (`--key=value`, `--flag`), each with the hosts it
    /// applies to; merged into every host's `config.yaml` before the role and host arguments.
    pub k3s_config: Vec<(FlagScope, String)>,
    /// YAML manifests copied to every server's `/var/lib/rancher/k3s/server/manifests/`.
    pub manifests: Vec<PathBuf>,
    /// Variables for the k3s service's env file (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`,
    /// `CONTAINERD_*`), given to the installer, which writes them there.
    pub service_env: Vec<(String, String)>,
    /// Template overrides for the k3s config (and GitLab files), as `[gitlab] templates_dir`.
    pub templates_dir: Option<PathBuf>,
    /// Persist packet forwarding in `/etc/sysctl.d/90-edgeops-k3s.conf` on every host.
    pub forwarding_sysctls: bool,
    /// Copy the admin kubeconfig to the login user's `~/.kube/config` on servers.
    pub user_kubeconfig: bool,
    /// Open the k3s ports when ufw or firewalld is active (default true; `open_firewall = false`).
    pub open_firewall: bool,
}

/// The validated `[registries]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Registries {
    /// Registry name (`docker.io`, `registry.example.com:5000`, `*` for every registry) →
    /// where to pull from instead.
    pub mirrors: BTreeMap<String, Mirror>,
    /// Registry host (`registry.example.com:5000`) → auth and TLS settings.
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mirror {
    /// Endpoint URLs, tried in order (`https://HOST[:PORT][/v2]`).
    pub endpoints: Vec<String>,
    /// Regular expression → replacement, applied to image names pulled through the endpoints.
    pub rewrites: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegistryConfig {
    pub username: Option<String>,
    pub password: Option<SecretSource>,
    /// A pre-encoded `base64(user:password)` string.
    pub auth: Option<SecretSource>,
    pub identity_token: Option<SecretSource>,
    /// Workstation files uploaded to every host (the CA, a client certificate and its key).
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}
