//! `edgeops check INVENTORY`: validate offline and print a summary (text or JSON), honouring `--limit`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::cli::{GlobalArgs, InventoryArg, OutputFormat};
use crate::exit::Failure;
use crate::inventory::{
    self, GitLab, Host, HostEntry, HostKeyPolicy, Inventory, Role, RunnerType, SecretSource,
    SshSettings, Sudo, hostlist,
};

pub fn run(global: &GlobalArgs, args: &InventoryArg) -> anyhow::Result<ExitCode> {
    let (inventory, entries) = inventory::load_with_entries(&args.inventory)?;
    let selected = inventory::select(&inventory, global.limit.as_deref())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let notes = offline_file_checks(&inventory)?;
    let summary = Summary::new(&inventory, &entries, &selected, global.limit.as_deref());
    if !global.quiet {
        for note in &notes {
            eprintln!("note: {note}");
        }
    }
    let mut out = std::io::stdout().lock();
    match global.output {
        OutputFormat::Json => writeln!(out, "{:#}", summary.json())?,
        OutputFormat::Text if global.quiet => writeln!(out, "{}", summary.headline())?,
        OutputFormat::Text => write!(out, "{}", summary.text())?,
    }
    if global.verbose > 0 && global.output == OutputFormat::Text {
        write!(out, "\n{}", super::reach::provenance(&selected)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What loading cannot see on its own: template overrides loaded and rendered with the
/// inventory's values (placeholders for secrets, as `render` does), and which identity files are
/// passphrase-protected. Returns notes to show; a template that fails is bad input.
fn offline_file_checks(inventory: &Inventory) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    if inventory
        .gitlab
        .as_ref()
        .is_some_and(|gitlab| gitlab.templates_dir.is_some())
    {
        let bundle =
            super::render::render_bundle(inventory, &super::render::RenderOptions::default())
                .map_err(|e| Failure::Usage(format!("templates_dir: {e:#}")))?;
        notes.extend(
            bundle
                .notes
                .into_iter()
                .filter(|n| n.contains("matches no built-in")),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for host in &inventory.hosts {
        for file in &host.ssh.identity_files {
            if !seen.insert(file.clone()) {
                continue;
            }
            if let Ok(inventory::files::KeyFile::PassphraseProtected) =
                inventory::files::identity_file(file)
            {
                let source = match &host.ssh.passphrase_env {
                    Some(var) => format!("read from ${var}"),
                    None => {
                        "asked on the terminal (set passphrase_env for unattended runs)".to_owned()
                    }
                };
                notes.push(format!(
                    "identity file {} is passphrase-protected: its passphrase is {source}",
                    file.display()
                ));
            }
        }
    }
    Ok(notes)
}

/// What `check` reports: the inventory, its entries, and which hosts `--limit` kept.
struct Summary<'a> {
    inventory: &'a Inventory,
    entries: &'a [HostEntry],
    /// Per host index: kept by `--limit`.
    selected: Vec<bool>,
    limit: Option<&'a str>,
}

impl<'a> Summary<'a> {
    fn new(
        inventory: &'a Inventory,
        entries: &'a [HostEntry],
        selected: &[&Host],
        limit: Option<&'a str>,
    ) -> Self {
        let chosen: std::collections::HashSet<&str> =
            selected.iter().map(|h| h.name.as_str()).collect();
        Summary {
            inventory,
            entries,
            selected: inventory
                .hosts
                .iter()
                .map(|h| chosen.contains(h.name.as_str()))
                .collect(),
            limit,
        }
    }

    fn selected_hosts(&self) -> impl Iterator<Item = &'a Host> + '_ {
        self.inventory
            .hosts
            .iter()
            .zip(&self.selected)
            .filter_map(|(h, keep)| keep.then_some(h))
    }

    fn count_role(&self, role: Role) -> usize {
        self.selected_hosts().filter(|h| h.role == role).count()
    }

    fn headline(&self) -> String {
        let total = self.inventory.hosts.len();
        let chosen = self.selected_hosts().count();
        let hosts = if self.limit.is_some() {
            format!("{chosen} of {total} hosts selected")
        } else {
            plural(total, "host")
        };
        format!(
            "{}: valid, cluster `{}`, {hosts} ({}, {})",
            self.inventory.path.display(),
            self.inventory.cluster.name,
            plural(self.count_role(Role::Server), "server"),
            plural(self.count_role(Role::Agent), "agent"),
        )
    }

    fn text(&self) -> String {
        let inv = self.inventory;
        let c = &inv.cluster;
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.headline());
        let version = match &c.version {
            Some(v) => format!("k3s {v} (pinned)"),
            None => format!("k3s channel `{}`", c.channel),
        };
        let ha = if c.ha { ", HA (embedded etcd)" } else { "" };
        let airgap = if c.airgap { ", air-gapped" } else { "" };
        let _ = writeln!(out, "cluster: {}, {version}{ha}{airgap}", c.name);
        let _ = writeln!(
            out,
            "token:   {}",
            describe_secret(&c.token, "read back from the first server")
        );
        if let Some(endpoint) = &c.api_endpoint {
            let _ = writeln!(out, "api:     {endpoint}:6443");
        }
        if !c.disable.is_empty() {
            let _ = writeln!(out, "disable: {}", c.disable.join(", "));
        }
        if let Some(registries) = &inv.registries {
            let names = |keys: Vec<&String>| {
                keys.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "registries: mirrors {}; configs {}",
                names(registries.mirrors.keys().collect()),
                names(registries.configs.keys().collect()),
            );
        }
        let extras = &c.extras;
        if !extras.k3s_config.is_empty()
            || !extras.manifests.is_empty()
            || !extras.service_env.is_empty()
        {
            let _ = writeln!(
                out,
                "k3s:     {} free-form config flag(s), {} manifest(s), service env {}",
                extras.k3s_config.len(),
                extras.manifests.len(),
                extras
                    .service_env
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(limit) = self.limit {
            let _ = writeln!(out, "limit:   {limit}");
        }
        let _ = writeln!(out, "hosts:");
        let rows: Vec<(String, String)> = self
            .entries
            .iter()
            .filter_map(|entry| self.entry_row(entry))
            .collect();
        let width = rows
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(0);
        for (names, detail) in rows {
            let _ = writeln!(out, "  {names:<width$}  ({detail})");
        }
        let groups = self.groups();
        if !groups.is_empty() {
            let list: Vec<String> = groups
                .iter()
                .map(|(name, count)| format!("{name} ({})", plural(*count, "host")))
                .collect();
            let _ = writeln!(out, "groups:  {}", list.join(", "));
        }
        let _ = writeln!(
            out,
            "ssh:     {}, concurrency {}",
            self.ssh_line(),
            inv.concurrency
        );
        if let Some(gitlab) = &inv.gitlab {
            let _ = writeln!(out, "gitlab:  {}", gitlab_line(gitlab));
        }
        out
    }

    /// `pi-[01-32]` and `(32 agents, 10.0.1.11-10.0.1.42)`; only hosts `--limit` kept.
    fn entry_row(&self, entry: &HostEntry) -> Option<(String, String)> {
        let hosts: Vec<&Host> = entry
            .hosts
            .clone()
            .filter(|&i| self.selected[i])
            .map(|i| &self.inventory.hosts[i])
            .collect();
        let (first, last) = (hosts.first()?, hosts.last()?);
        let total = entry.hosts.len();
        let names = if hosts.len() == total {
            entry.pattern.clone()
        } else {
            hostlist::fold(&hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>())
        };
        let role = if hosts.len() == 1 && total == 1 {
            entry.role.as_str().to_string()
        } else if hosts.len() == total {
            plural(total, entry.role.as_str())
        } else {
            format!("{} of {}", hosts.len(), plural(total, entry.role.as_str()))
        };
        let addresses = if hosts.len() == 1 {
            first.address.clone()
        } else if first.address.parse::<std::net::Ipv4Addr>().is_ok() {
            format!("{}-{}", first.address, last.address)
        } else {
            format!("{} .. {}", first.address, last.address)
        };
        Some((names, format!("{role}, {addresses}")))
    }

    /// Group name → selected member count, in name order.
    fn groups(&self) -> BTreeMap<&'a str, usize> {
        let mut groups = BTreeMap::new();
        for host in self.selected_hosts() {
            for group in &host.groups {
                *groups.entry(group.as_str()).or_insert(0) += 1;
            }
        }
        groups
    }

    /// The SSH settings most hosts share, so the line stays short for a uniform fleet.
    fn ssh_line(&self) -> String {
        let mut users: Vec<&str> = self.selected_hosts().map(|h| h.ssh.user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        let first = self.selected_hosts().next().map(|h| &h.ssh);
        let Some(ssh) = first else {
            return String::new();
        };
        let auth = match (ssh.identity_files.len(), ssh.use_agent) {
            (0, true) => "ssh-agent".to_string(),
            (0, false) => "no keys".to_string(),
            (n, agent) => format!(
                "{}{}",
                plural(n, "key file"),
                if agent { " + ssh-agent" } else { "" }
            ),
        };
        let jump = ssh
            .jump
            .as_ref()
            .map(|j| format!(", via {}", j.address))
            .unwrap_or_default();
        format!(
            "user {}, {auth}, host keys {}{jump}",
            users.join("/"),
            policy_str(ssh.host_key_policy)
        )
    }

    fn json(&self) -> Value {
        let inv = self.inventory;
        let c = &inv.cluster;
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let selected = e.hosts.clone().filter(|&i| self.selected[i]).count();
                json!({
                    "pattern": e.pattern,
                    "role": e.role.as_str(),
                    "line": e.line,
                    "count": e.hosts.len(),
                    "selected": selected,
                    "first_address": inv.hosts[e.hosts.start].address,
                    "last_address": inv.hosts[e.hosts.end - 1].address,
                })
            })
            .collect();
        json!({
            "valid": true,
            "path": inv.path,
            "limit": self.limit,
            "cluster": {
                "name": c.name,
                "channel": c.channel,
                "version": c.version,
                "token": secret_json(&c.token),
                "api_endpoint": c.api_endpoint,
                "tls_san": c.tls_san,
                "server_args": c.server_args,
                "agent_args": c.agent_args,
                "disable": c.disable,
                "install_url": c.install_url,
                "channel_url": c.channel_url,
                "download_url": c.download_url,
                "ha": c.ha,
                "airgap": c.airgap,
                "artifacts_dir": c.artifacts_dir,
                "images": c.images,
                "kubeconfig_mode": c.kubeconfig_mode,
                "join_timeout": humantime::format_duration(c.join_timeout).to_string(),
            },
            "concurrency": inv.concurrency,
            "counts": {
                "hosts": inv.hosts.len(),
                "selected": self.selected_hosts().count(),
                "servers": self.count_role(Role::Server),
                "agents": self.count_role(Role::Agent),
            },
            "groups": self.groups(),
            "entries": entries,
            "hosts": self.selected_hosts().map(host_json).collect::<Vec<_>>(),
            "gitlab": inv.gitlab.as_ref().map(gitlab_json),
        })
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn policy_str(policy: HostKeyPolicy) -> &'static str {
    match policy {
        HostKeyPolicy::Strict => "strict",
        HostKeyPolicy::AcceptNew => "accept-new",
        HostKeyPolicy::Off => "off",
    }
}

/// Where a secret comes from; for an env var, whether it is set now (never its value).
fn describe_secret(source: &SecretSource, absent: &str) -> String {
    match source {
        SecretSource::Env(var) => {
            let state = if std::env::var_os(var).is_some() {
                "set"
            } else {
                "not set"
            };
            format!("from ${var} ({state})")
        }
        SecretSource::File(path) => format!("from file {}", path.display()),
        SecretSource::Generate => absent.to_string(),
    }
}

fn secret_json(source: &SecretSource) -> Value {
    match source {
        SecretSource::Env(var) => json!({"env": var}),
        SecretSource::File(path) => json!({"file": path}),
        SecretSource::Generate => json!("generate"),
    }
}

fn runner_type_str(t: RunnerType) -> &'static str {
    match t {
        RunnerType::Instance => "instance",
        RunnerType::Group => "group",
        RunnerType::Project => "project",
    }
}

fn gitlab_line(g: &GitLab) -> String {
    let runner = if g.runner.enabled {
        let tags = if g.runner.tags.is_empty() {
            String::new()
        } else {
            format!(", tags {}", g.runner.tags.join(","))
        };
        format!("{} runner{tags}", runner_type_str(g.runner.runner_type))
    } else {
        "no runner".to_string()
    };
    format!(
        "{} project `{}`, agent `{}`, {runner}, token {}",
        g.url,
        g.project,
        g.agent_name,
        describe_secret(&g.token, "not set")
    )
}

fn gitlab_json(g: &GitLab) -> Value {
    json!({
        "url": g.url,
        "project": g.project,
        "group": g.group,
        "agent_name": g.agent_name,
        "token": secret_json(&g.token),
        "kas_address": g.kas_address,
        "templates_dir": g.templates_dir,
        "runner": {
            "enabled": g.runner.enabled,
            "type": runner_type_str(g.runner.runner_type),
            "tags": g.runner.tags,
            "run_untagged": g.runner.run_untagged,
            "concurrent": g.runner.concurrent,
            "privileged": g.runner.privileged,
        },
    })
}

fn host_json(h: &Host) -> Value {
    json!({
        "name": h.name,
        "address": h.address,
        "role": h.role.as_str(),
        "node_name": h.node_name,
        "groups": h.groups,
        "labels": h.labels,
        "taints": h.taints,
        "extra_args": h.extra_args,
        "ssh": ssh_json(&h.ssh),
    })
}

fn ssh_json(s: &SshSettings) -> Value {
    let sudo = match &s.sudo {
        Sudo::None => json!({"mode": "none"}),
        Sudo::Passwordless => json!({"mode": "passwordless"}),
        Sudo::Password { env } => json!({"mode": "password", "env": env}),
    };
    json!({
        "user": s.user,
        "port": s.port,
        "identity_files": s.identity_files,
        "agent": s.use_agent,
        "known_hosts": s.known_hosts,
        "host_key_policy": policy_str(s.host_key_policy),
        "jump": s.jump.as_ref().map(|j| json!({"user": j.user, "address": j.address, "port": j.port})),
        "connect_timeout_secs": s.connect_timeout.as_secs_f64(),
        "command_timeout_secs": s.command_timeout.as_secs_f64(),
        "sudo": sudo,
        "passphrase_env": s.passphrase_env,
    })
}
