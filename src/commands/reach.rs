//! How each host is reached: the inventory's SSH settings merged with the user's ssh_config
//! (`~/.ssh/config`, or `-F FILE`), the inventory winning wherever one of its layers says
//! something, and where every value came from (for `check -v`).

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::inventory::{Host, JumpHost};
use crate::ssh::config::{HostConfig, LocalContext, SshConfig, expand_proxy_command};
use crate::ssh::known_hosts::Origin;
use crate::ssh::{ConnectOptions, JumpOptions};

/// `-F FILE` from the command line; unset means `~/.ssh/config`.
static CONFIG_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Remember `-F FILE` for the whole run (called once, at start-up).
pub fn set_config_file(file: Option<PathBuf>) {
    if let Some(file) = file {
        let _ = CONFIG_FILE.set(file);
    }
}

/// How deep a jump host's own `ProxyJump` is followed.
const MAX_JUMP_DEPTH: usize = 8;

/// Where one effective value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Inventory,
    Default,
    SshConfig(Origin),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Inventory => f.write_str("inventory"),
            Source::Default => f.write_str("default"),
            Source::SshConfig(origin) => write!(f, "{origin}"),
        }
    }
}

/// One host after merging: the effective host (address, user, port, keys, agent, known_hosts,
/// single jump, connect timeout), what does not fit the inventory model (jump chains, proxy
/// command), and the provenance of every value.
#[derive(Debug, Clone)]
pub struct Reached {
    pub host: Host,
    pub jump_chain: Option<JumpOptions>,
    pub proxy_command: Option<String>,
    /// Further known_hosts files named by `UserKnownHostsFile`.
    pub extra_known_hosts: Vec<PathBuf>,
    /// (setting, effective value, source), in a fixed order.
    pub sources: Vec<(&'static str, String, Source)>,
    /// ssh_config lines that apply to this host but are not honoured.
    pub unsupported: Vec<String>,
}

/// The configuration file to read and whether it must exist (only when named with `-F`).
fn config_file(local: &LocalContext) -> (PathBuf, bool) {
    match CONFIG_FILE.get() {
        Some(file) => (file.clone(), true),
        None => (local.home.join(".ssh/config"), false),
    }
}

/// Read the user's ssh_config once.
pub fn load() -> anyhow::Result<(SshConfig, LocalContext)> {
    let local = LocalContext::from_env();
    let (file, required) = config_file(&local);
    if required && !file.is_file() {
        return Err(crate::exit::Failure::Usage(format!(
            "ssh config {} (-F) does not exist",
            file.display()
        ))
        .into());
    }
    let config = SshConfig::load(&file, &local);
    if !config.problems.is_empty() {
        return Err(crate::exit::Failure::Usage(format!(
            "ssh config: {}",
            config.problems.join("; ")
        ))
        .into());
    }
    Ok((config, local))
}

/// Merge every host (reading ssh_config once), warning once per unsupported line.
pub fn resolve_all(hosts: &[&Host]) -> anyhow::Result<Vec<Reached>> {
    let (config, local) = load()?;
    let reached: Vec<Reached> = hosts.iter().map(|h| resolve(h, &config, &local)).collect();
    let mut warned: Vec<&String> = Vec::new();
    for note in reached.iter().flat_map(|r| &r.unsupported) {
        if !warned.contains(&note) {
            tracing::warn!("{note}");
            warned.push(note);
        }
    }
    Ok(reached)
}

/// Put what the inventory model cannot hold (jump chains, proxy commands) into the targets.
pub fn finish(reached: &[Reached], targets: &mut [ConnectOptions]) {
    for target in targets {
        if let Some(r) = reached.iter().find(|r| r.host.name == target.name) {
            if r.jump_chain.is_some() {
                target.jump = r.jump_chain.clone();
            }
            target.proxy_command = r.proxy_command.clone();
        }
    }
}

/// Merge one host. Matching is on the inventory `address` (what one would type after `ssh`).
pub fn resolve(host: &Host, config: &SshConfig, local: &LocalContext) -> Reached {
    let explicit = host.ssh.explicit;
    let cfg = config.resolve(
        &host.address,
        explicit.user.then_some(host.ssh.user.as_str()),
        local,
    );
    let mut out = host.clone();
    let mut sources = Vec::new();
    let from_inventory = |set: bool| {
        if set {
            Source::Inventory
        } else {
            Source::Default
        }
    };

    let (address, source) = match &cfg.hostname {
        Some(h) => (h.value.clone(), Source::SshConfig(h.origin.clone())),
        None => (host.address.clone(), Source::Inventory),
    };
    out.address = address;
    sources.push(("address", out.address.clone(), source));

    let source = match &cfg.user {
        Some(u) if !explicit.user => {
            out.ssh.user = u.value.clone();
            Source::SshConfig(u.origin.clone())
        }
        _ => from_inventory(explicit.user),
    };
    sources.push(("user", out.ssh.user.clone(), source));

    let source = match &cfg.port {
        Some(p) if !explicit.port => {
            out.ssh.port = p.value;
            Source::SshConfig(p.origin.clone())
        }
        _ => from_inventory(explicit.port),
    };
    sources.push(("port", out.ssh.port.to_string(), source));

    let unsupported = cfg.unsupported.clone();
    let source = if !explicit.identity_files && !cfg.identity_files.is_empty() {
        // Like ssh, files that do not exist are skipped.
        let existing: Vec<_> = cfg
            .identity_files
            .iter()
            .filter(|f| f.value.is_file())
            .collect();
        out.ssh.identity_files = existing.iter().map(|f| f.value.clone()).collect();
        match existing.first() {
            Some(first) => Source::SshConfig(first.origin.clone()),
            None => Source::SshConfig(cfg.identity_files[0].origin.clone()),
        }
    } else {
        from_inventory(explicit.identity_files)
    };
    let files: Vec<String> = out
        .ssh
        .identity_files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    sources.push(("identity_files", files.join(", "), source));

    let source = match &cfg.identities_only {
        Some(only) if !explicit.agent && only.value => {
            out.ssh.use_agent = false;
            Source::SshConfig(only.origin.clone())
        }
        _ => from_inventory(explicit.agent),
    };
    sources.push(("agent", out.ssh.use_agent.to_string(), source));

    let mut extra_known_hosts = Vec::new();
    let source = match &cfg.user_known_hosts_files {
        Some(files) if !explicit.known_hosts && !files.value.is_empty() => {
            out.ssh.known_hosts = Some(files.value[0].clone());
            extra_known_hosts = files.value[1..].to_vec();
            Source::SshConfig(files.origin.clone())
        }
        _ => from_inventory(explicit.known_hosts),
    };
    let shown = out
        .ssh
        .known_hosts
        .as_ref()
        .map_or("~/.ssh/known_hosts".to_string(), |p| {
            p.display().to_string()
        });
    sources.push(("known_hosts", shown, source));

    let source = match &cfg.connect_timeout {
        Some(t) if !explicit.connect_timeout => {
            out.ssh.connect_timeout = t.value;
            Source::SshConfig(t.origin.clone())
        }
        _ => from_inventory(explicit.connect_timeout),
    };
    sources.push((
        "connect_timeout",
        humantime::format_duration(out.ssh.connect_timeout).to_string(),
        source,
    ));

    // The route: the inventory's jump host, else ssh_config's ProxyJump chain or ProxyCommand.
    let mut jump_chain = None;
    let mut proxy_command = None;
    let (route, source) = if explicit.jump {
        let shown = out.ssh.jump.as_ref().map_or("direct".to_string(), |j| {
            format!(
                "jump {}@{}:{}",
                j.user.as_deref().unwrap_or(&out.ssh.user),
                j.address,
                j.port
            )
        });
        (shown, Source::Inventory)
    } else if let Some(jumps) = cfg.proxy_jump.as_ref().filter(|j| !j.value.is_empty()) {
        let chain = chain_of(&jumps.value, &out.ssh.user, config, local, 0);
        out.ssh.jump = chain.as_ref().map(|j| JumpHost {
            user: Some(j.user.clone()),
            address: j.address.clone(),
            port: j.port,
        });
        let shown = chain.as_ref().map_or(String::new(), describe_chain);
        jump_chain = chain;
        (
            format!("jump {shown}"),
            Source::SshConfig(jumps.origin.clone()),
        )
    } else if let Some(command) = cfg
        .proxy_command
        .as_ref()
        .and_then(|c| c.value.as_ref().map(|v| (v.clone(), c.origin.clone())))
    {
        out.ssh.jump = None;
        let expanded = expand_proxy_command(
            &command.0,
            &out.address,
            out.ssh.port,
            &out.ssh.user,
            &host.address,
        );
        proxy_command = Some(expanded.clone());
        (
            format!("ProxyCommand {expanded}"),
            Source::SshConfig(command.1),
        )
    } else if let Some(none) = &cfg.proxy_jump {
        out.ssh.jump = None;
        ("direct".to_string(), Source::SshConfig(none.origin.clone()))
    } else {
        ("direct".to_string(), Source::Default)
    };
    sources.push(("route", route, source));

    Reached {
        host: out,
        jump_chain,
        proxy_command,
        extra_known_hosts,
        sources,
        unsupported,
    }
}

/// `ProxyJump a,b` as nested hops (b reached through a), each hop's alias resolved through the
/// configuration (HostName, User, Port) and the first hop's own ProxyJump followed.
fn chain_of(
    hops: &[crate::ssh::config::JumpSpec],
    default_user: &str,
    config: &SshConfig,
    local: &LocalContext,
    depth: usize,
) -> Option<JumpOptions> {
    let mut previous: Option<JumpOptions> = None;
    for (index, hop) in hops.iter().enumerate() {
        let cfg: HostConfig = config.resolve(&hop.host, hop.user.as_deref(), local);
        let mut via = previous.take().map(Box::new);
        if index == 0
            && depth < MAX_JUMP_DEPTH
            && let Some(own) = cfg.proxy_jump.as_ref().filter(|j| !j.value.is_empty())
        {
            via = chain_of(&own.value, default_user, config, local, depth + 1).map(Box::new);
        }
        previous = Some(JumpOptions {
            address: cfg.hostname.map_or(hop.host.clone(), |h| h.value),
            port: hop.port.or(cfg.port.map(|p| p.value)).unwrap_or(22),
            user: hop
                .user
                .clone()
                .or(cfg.user.map(|u| u.value))
                .unwrap_or_else(|| default_user.to_string()),
            via,
        });
    }
    previous
}

fn describe_chain(jump: &JumpOptions) -> String {
    let me = format!("{}@{}:{}", jump.user, jump.address, jump.port);
    match &jump.via {
        Some(before) => format!("{} -> {me}", describe_chain(before)),
        None => me,
    }
}

/// `check -v`: per host, every setting with its value and where it came from.
pub fn provenance(hosts: &[&Host]) -> anyhow::Result<String> {
    let reached = resolve_all(hosts)?;
    let mut rows = vec![
        ["HOST", "SETTING", "VALUE", "FROM"]
            .map(String::from)
            .to_vec(),
    ];
    for r in &reached {
        for (setting, value, source) in &r.sources {
            rows.push(vec![
                r.host.name.clone(),
                setting.to_string(),
                value.clone(),
                source.to_string(),
            ]);
        }
        for note in &r.unsupported {
            rows.push(vec![
                r.host.name.clone(),
                "unsupported".into(),
                note.clone(),
                "ssh_config".into(),
            ]);
        }
    }
    Ok(super::run_tables::table(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn hosts(toml: &str) -> Vec<Host> {
        crate::inventory::parse(toml, Path::new("/inv/fleet.toml"))
            .unwrap()
            .hosts
    }

    #[test]
    fn inventory_wins_where_it_says_something_and_ssh_config_fills_the_rest() {
        let local = LocalContext {
            home: "/home/me".into(),
            user: "me".into(),
        };
        let config = SshConfig::parse(
            Path::new("/home/me/.ssh/config"),
            "Host gw\n  HostName 10.9.0.1\n  User admin\n  Port 2200\n\
             Host pi-*\n  User nobody\n  Port 2222\n  ProxyJump gw,10.9.0.2\n  ConnectTimeout 3\n\
             Host nc-*\n  ProxyCommand nc %h %p\n",
            &local,
        );
        let hosts = hosts(
            "[cluster]\nname = \"t\"\n[ssh]\nuser = \"pi\"\nidentity_files = []\n\
             [[hosts]]\nname = \"a\"\naddress = \"pi-a\"\nrole = \"server\"\n\
             [[hosts]]\nname = \"b\"\naddress = \"nc-b\"\nrole = \"agent\"\nssh = { port = 2022 }\n",
        );
        let a = resolve(&hosts[0], &config, &local);
        assert_eq!(a.host.ssh.user, "pi", "set in [ssh]: the inventory wins");
        assert_eq!(a.host.ssh.port, 2222);
        assert_eq!(a.host.ssh.connect_timeout, Duration::from_secs(3));
        let chain = a.jump_chain.unwrap();
        assert_eq!(
            describe_chain(&chain),
            "admin@10.9.0.1:2200 -> pi@10.9.0.2:22"
        );
        let b = resolve(&hosts[1], &config, &local);
        assert_eq!(b.proxy_command.as_deref(), Some("nc nc-b 2022"));
        let port = b.sources.iter().find(|s| s.0 == "port").unwrap();
        assert_eq!(port.2, Source::Inventory);
    }
}
