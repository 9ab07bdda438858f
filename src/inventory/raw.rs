//! The inventory exactly as written: serde structs mirroring the TOML, unknown keys rejected, spans
//! kept where a later check must point at a line. Nothing outside `inventory` sees these.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// Keys that would hold a secret in clear. They are accepted by the parser only so validation can
/// reject them with a message pointing at `*_env` / `*_file`, and they are never suggested.
pub const INLINE_SECRET_KEYS: &[&str] = &["token", "sudo_password", "passphrase", "password"];

/// Whether a key (any spelling: `agent_token`, `K3S_TOKEN`, `db-passwd`, `etcd-s3-secret-key`)
/// looks like it holds a secret; its value is masked wherever an error shows the line. Keys
/// that name where a secret comes from (`token_env`, `token_file`, ...) hold none.
pub fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let names_a_source = ["_env", "_file", "-file", "_files"]
        .iter()
        .any(|suffix| key.ends_with(suffix));
    !names_a_source
        && [
            "token",
            "passw",
            "passphrase",
            "secret",
            "pwd",
            "credential",
            "api_key",
            "apikey",
            "private_key",
        ]
        .iter()
        .any(|word| key.contains(word))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    /// A file of shared tables, read by `inventory::include` before this stage.
    #[allow(dead_code)]
    pub include: Option<Spanned<String>>,
    pub cluster: Option<Spanned<RawCluster>>,
    pub ssh: Option<Spanned<RawSsh>>,
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<RawGroup>>,
    #[serde(default)]
    pub hosts: Vec<Spanned<RawHost>>,
    pub gitlab: Option<Spanned<RawGitLab>>,
    pub registries: Option<Spanned<RawRegistries>>,
    pub ci: Option<Spanned<RawCi>>,
}

/// `[ci]`: how `edgeops ci` runs this cluster's jobs (validated in `inventory::ci`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCi {
    pub runner_tag: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: Option<Spanned<String>>,
    pub channel: Option<Spanned<String>>,
    pub version: Option<Spanned<String>>,
    pub token: Option<Spanned<toml::Value>>,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub api_endpoint: Option<Spanned<String>>,
    #[serde(default)]
    pub tls_san: Vec<Spanned<String>>,
    #[serde(default)]
    pub server_args: Vec<Spanned<String>>,
    #[serde(default)]
    pub agent_args: Vec<Spanned<String>>,
    #[serde(default)]
    pub disable: Vec<Spanned<String>>,
    pub install_url: Option<Spanned<String>>,
    pub channel_url: Option<Spanned<String>>,
    pub download_url: Option<Spanned<String>>,
    pub ha: Option<Spanned<bool>>,
    pub airgap: Option<Spanned<bool>>,
    pub artifacts_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub images: Vec<Spanned<String>>,
    pub kubeconfig_mode: Option<Spanned<String>>,
    pub lock_expiry: Option<Spanned<toml::Value>>,
    pub join_timeout: Option<Spanned<toml::Value>>,
    /// The extras validated by `cluster_extras`.
    pub k3s_config: Option<Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
    #[serde(default)]
    pub manifests: Vec<Spanned<String>>,
    pub service_env: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub templates_dir: Option<Spanned<String>>,
    pub forwarding_sysctls: Option<bool>,
    pub user_kubeconfig: Option<bool>,
    pub open_firewall: Option<bool>,
}

/// `[ssh]`, `[groups.NAME.ssh]` and a host's `ssh = {..}`: every field optional so layers merge.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    pub user: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub identity_files: Option<Spanned<Vec<Spanned<String>>>>,
    pub agent: Option<Spanned<bool>>,
    pub known_hosts: Option<Spanned<String>>,
    pub host_key_policy: Option<Spanned<String>>,
    pub jump: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<toml::Value>>,
    pub command_timeout: Option<Spanned<toml::Value>>,
    /// Only meaningful in the top-level `[ssh]`; rejected in groups and hosts.
    pub concurrency: Option<Spanned<i64>>,
    pub sudo: Option<Spanned<String>>,
    pub sudo_password_env: Option<Spanned<String>>,
    pub sudo_password: Option<Spanned<toml::Value>>,
    pub passphrase_env: Option<Spanned<String>>,
    pub passphrase: Option<Spanned<toml::Value>>,
    pub password: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub ssh: Option<Spanned<RawSsh>>,
    pub role: Option<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub taints: Vec<Spanned<String>>,
    #[serde(default)]
    pub extra_args: Vec<Spanned<String>>,
    /// Free-form k3s config for member hosts (`cluster_extras`), before their `extra_args`.
    pub k3s_config: Option<Spanned<RawK3sConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub name: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub address_start: Option<Spanned<String>>,
    pub role: Option<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    pub node_name: Option<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub taints: Vec<Spanned<String>>,
    #[serde(default)]
    pub extra_args: Vec<Spanned<String>>,
    pub ssh: Option<Spanned<RawSsh>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGitLab {
    pub url: Option<Spanned<String>>,
    pub project: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub agent_name: Option<Spanned<String>>,
    pub token: Option<Spanned<toml::Value>>,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub kas_address: Option<Spanned<String>>,
    pub templates_dir: Option<Spanned<String>>,
    pub runner: Option<Spanned<RawRunner>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunner {
    pub enabled: Option<bool>,
    #[serde(rename = "type")]
    pub runner_type: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    pub run_untagged: Option<bool>,
    pub concurrent: Option<Spanned<i64>>,
    pub privileged: Option<bool>,
    pub token: Option<Spanned<toml::Value>>,
}

/// A free-form k3s config table as written.
pub(super) type RawK3sConfig = std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// `[registries]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistries {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Spanned<RawMirror>>,
    #[serde(default)]
    pub configs: BTreeMap<String, Spanned<RawRegistryConfig>>,
}

/// `[registries.mirrors."docker.io"]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMirror {
    #[serde(default)]
    pub endpoints: Vec<Spanned<String>>,
    #[serde(default)]
    pub rewrites: BTreeMap<String, String>,
}

/// `[registries.configs."registry.example.com:5000"]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistryConfig {
    pub username: Option<Spanned<String>>,
    /// Inline secrets: accepted by the parser only to be rejected with a pointer to `*_env`.
    pub password: Option<Spanned<toml::Value>>,
    pub auth: Option<Spanned<toml::Value>>,
    pub identity_token: Option<Spanned<toml::Value>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub auth_env: Option<Spanned<String>>,
    pub auth_file: Option<Spanned<String>>,
    pub identity_token_env: Option<Spanned<String>>,
    pub identity_token_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<bool>,
}
