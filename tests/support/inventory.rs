//! The one lab inventory builder of the lab tests: a cluster on some of a running lab's hosts
//! (first hosts servers, the rest agents), k3s from the lab's mirror, the lab's key and
//! known_hosts with strict host keys, and what a test adds: cluster options and limits, `[ssh]`
//! lines, further tables (`[gitlab]`, `[registries]`, ...).
//!
//! `lab.inventory("name").hosts(&["lab-01", "lab-02"]).cluster("join_timeout = \"20s\"").write(dir)`

use std::path::{Path, PathBuf};

use super::Lab;

/// An inventory being written for tests; see the module docs.
pub struct LabInventory<'a> {
    lab: &'a Lab,
    name: String,
    file: Option<String>,
    release: String,
    airgap: bool,
    hosts: Vec<String>,
    servers: usize,
    cluster: Vec<String>,
    sudo: String,
    ssh: Vec<String>,
    tables: Vec<String>,
}

impl Lab {
    /// An inventory for cluster `name` on this lab, k3s from the `stable` channel of the
    /// lab's mirror, passwordless sudo; written to `NAME.toml` by [`LabInventory::write`].
    pub fn inventory(&self, name: &str) -> LabInventory<'_> {
        LabInventory {
            lab: self,
            name: name.to_owned(),
            file: None,
            release: "channel = \"stable\"".to_owned(),
            airgap: false,
            hosts: Vec::new(),
            servers: 1,
            cluster: Vec::new(),
            sudo: "sudo = \"passwordless\"".to_owned(),
            ssh: Vec::new(),
            tables: Vec::new(),
        }
    }
}

impl LabInventory<'_> {
    /// The cluster's hosts, in this order: the first is the server (see `servers`), the rest
    /// agents.
    pub fn hosts(mut self, names: &[&str]) -> Self {
        self.hosts = names.iter().map(|&name| name.to_owned()).collect();
        self
    }

    /// The first `n` hosts are servers; more than one makes the cluster HA (`ha = true`).
    pub fn servers(mut self, n: usize) -> Self {
        self.servers = n;
        self
    }

    /// Pins k3s to `version` instead of following the `stable` channel.
    pub fn version(mut self, version: &str) -> Self {
        self.release = format!("version = \"{version}\"");
        self
    }

    /// `airgap = true`: k3s comes from uploaded artifacts, not from the hosts' downloads.
    pub fn airgap(mut self) -> Self {
        self.airgap = true;
        self
    }

    /// More `[cluster]` lines (options and limits: `join_timeout = "20s"`, `token_env = ...`).
    pub fn cluster(mut self, lines: &str) -> Self {
        if !lines.is_empty() {
            self.cluster.push(lines.to_owned());
        }
        self
    }

    /// More `[ssh]` lines (`connect_timeout = "3s"`, ...).
    pub fn ssh(mut self, lines: &str) -> Self {
        if !lines.is_empty() {
            self.ssh.push(lines.to_owned());
        }
        self
    }

    /// sudo with the password in the environment variable `var` instead of passwordless.
    pub fn sudo_password_env(mut self, var: &str) -> Self {
        self.sudo = format!("sudo = \"password\"\nsudo_password_env = \"{var}\"");
        self
    }

    /// Further tables after the hosts, as TOML text (`[gitlab]` with its runner,
    /// `[registries]`, ...).
    pub fn tables(mut self, text: &str) -> Self {
        if !text.is_empty() {
            self.tables.push(text.to_owned());
        }
        self
    }

    /// The file name in the folder given to `write` (default: `NAME.toml`).
    pub fn file_name(mut self, file: &str) -> Self {
        self.file = Some(file.to_owned());
        self
    }

    /// The inventory as TOML: `[cluster]` then `[ssh]` (tests that add `[cluster]` keys to a
    /// written file insert them before `[ssh]`), the hosts, then the further tables.
    pub fn text(&self) -> String {
        let lab = self.lab;
        let mirror = format!("http://{}:8080", lab.bridge_address());
        let mut toml = format!("[cluster]\nname = \"{}\"\n{}\n", self.name, self.release);
        if self.servers > 1 {
            toml.push_str("ha = true\n");
        }
        if self.airgap {
            toml.push_str("airgap = true\n");
        }
        toml.push_str(&format!(
            "install_url = \"{mirror}/install.sh\"\n\
             channel_url = \"{mirror}/v1-release/channels\"\n\
             download_url = \"{mirror}/k3s-io/k3s/releases\"\n"
        ));
        for lines in &self.cluster {
            toml.push_str(lines);
            toml.push('\n');
        }
        toml.push_str(&format!(
            "\n[ssh]\nuser = \"{user}\"\nidentity_files = [\"{key}\"]\nknown_hosts = \"{kh}\"\n\
             host_key_policy = \"strict\"\n{sudo}\n",
            user = lab.hosts()[0].user,
            key = lab.key_path().display(),
            kh = lab.known_hosts_path().display(),
            sudo = self.sudo,
        ));
        for lines in &self.ssh {
            toml.push_str(lines);
            toml.push('\n');
        }
        for (i, host) in self.hosts.iter().enumerate() {
            let role = if i < self.servers { "server" } else { "agent" };
            toml.push_str(&format!(
                "\n[[hosts]]\nname = \"{host}\"\naddress = \"{}\"\nrole = \"{role}\"\n",
                lab.host(host).address
            ));
        }
        for text in &self.tables {
            toml.push('\n');
            toml.push_str(text);
            if !text.ends_with('\n') {
                toml.push('\n');
            }
        }
        toml
    }

    /// Writes the inventory into `dir` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let file = self
            .file
            .clone()
            .unwrap_or_else(|| format!("{}.toml", self.name));
        let path = dir.join(file);
        std::fs::write(&path, self.text()).unwrap();
        path
    }
}
