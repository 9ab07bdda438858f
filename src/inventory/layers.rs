//! Settings layers: `[ssh]` defaults, `[groups.NAME]` and per-host `ssh = {..}` are each validated
//! once into a partial layer, then stacked (defaults ← groups in listed order ← host) per host entry.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::diagnostics::{Ctx, check_env_name};
use super::error::ErrorKind;
use super::formats;
use super::model::{HostKeyPolicy, JumpHost, Role, SshExplicit, SshSettings, Sudo};
use super::raw::{RawGroup, RawSsh};

pub const DEFAULT_USER: &str = "root";
pub const DEFAULT_PORT: u16 = 22;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// Keys tried when no layer sets `identity_files`, as OpenSSH does (only those that exist).
pub const DEFAULT_IDENTITY_FILES: &[&str] = &[".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SudoMode {
    None,
    Passwordless,
    Password,
}

/// One validated layer of SSH settings; `None` = not set here, fall through to the layer below.
#[derive(Debug, Clone, Default)]
pub(super) struct SshLayer {
    user: Option<String>,
    port: Option<u16>,
    identity_files: Option<Vec<PathBuf>>,
    agent: Option<bool>,
    known_hosts: Option<PathBuf>,
    host_key_policy: Option<HostKeyPolicy>,
    /// `Some(None)` = explicitly no jump host (`jump = ""`), overriding a default.
    jump: Option<Option<JumpHost>>,
    connect_timeout: Option<Duration>,
    command_timeout: Option<Duration>,
    sudo: Option<(SudoMode, Range<usize>)>,
    sudo_password_env: Option<String>,
    passphrase_env: Option<String>,
}

impl SshLayer {
    /// Settings of `upper` win over `self`.
    pub(super) fn overlay(&mut self, upper: &SshLayer) {
        macro_rules! take {
            ($($field:ident),*) => {$(
                if upper.$field.is_some() {
                    self.$field = upper.$field.clone();
                }
            )*};
        }
        take!(
            user,
            port,
            identity_files,
            agent,
            known_hosts,
            host_key_policy,
            jump,
            connect_timeout,
            command_timeout,
            sudo,
            sudo_password_env,
            passphrase_env
        );
    }

    /// Apply defaults. `at` is where to point if sudo cannot be resolved; `scope` names the hosts.
    pub(super) fn finish(&self, ctx: &mut Ctx, at: Range<usize>, scope: &str) -> SshSettings {
        let user = self.user.clone().unwrap_or_else(|| DEFAULT_USER.into());
        let mode = match &self.sudo {
            Some((mode, _)) => *mode,
            None if self.sudo_password_env.is_some() => SudoMode::Password,
            None if user == "root" => SudoMode::None,
            None => SudoMode::Passwordless,
        };
        let sudo = match (mode, &self.sudo_password_env) {
            (SudoMode::None, _) => Sudo::None,
            (SudoMode::Passwordless, _) => Sudo::Passwordless,
            (SudoMode::Password, Some(env)) => Sudo::Password { env: env.clone() },
            (SudoMode::Password, None) => {
                let span = self.sudo.as_ref().map_or(at, |(_, span)| span.clone());
                ctx.report(
                    ErrorKind::MissingKey,
                    Some(span),
                    "`sudo = \"password\"` without `sudo_password_env`",
                    format!("for {scope}: add `sudo_password_env = \"VAR\"` naming the environment variable that holds it"),
                );
                Sudo::Passwordless
            }
        };
        let identity_files = match &self.identity_files {
            Some(files) => files.clone(),
            None => default_identity_files(ctx.home()),
        };
        SshSettings {
            user,
            port: self.port.unwrap_or(DEFAULT_PORT),
            identity_files,
            use_agent: self.agent.unwrap_or(true),
            known_hosts: self.known_hosts.clone(),
            host_key_policy: self.host_key_policy.unwrap_or(HostKeyPolicy::Strict),
            jump: self.jump.clone().flatten(),
            connect_timeout: self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            command_timeout: self.command_timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
            sudo,
            passphrase_env: self.passphrase_env.clone(),
            explicit: SshExplicit {
                user: self.user.is_some(),
                port: self.port.is_some(),
                identity_files: self.identity_files.is_some(),
                agent: self.agent.is_some(),
                known_hosts: self.known_hosts.is_some(),
                jump: self.jump.is_some(),
                connect_timeout: self.connect_timeout.is_some(),
            },
        }
    }
}

fn default_identity_files(home: Option<&Path>) -> Vec<PathBuf> {
    let Some(home) = home else {
        return Vec::new();
    };
    DEFAULT_IDENTITY_FILES
        .iter()
        .map(|f| home.join(f))
        .filter(|p| p.is_file())
        .collect()
}

/// Validate one `ssh` table. `scope` names it in messages: `[ssh]`, `group \`pis\``, `host \`pi-01\``.
pub(super) fn ssh_layer(ctx: &mut Ctx, raw: &RawSsh, scope: &str) -> SshLayer {
    for (key, value) in [
        ("sudo_password", &raw.sudo_password),
        ("passphrase", &raw.passphrase),
        ("password", &raw.password),
    ] {
        if let Some(value) = value {
            let env_key = if key == "passphrase" {
                "passphrase_env"
            } else {
                "sudo_password_env"
            };
            ctx.report_secret(
                value.span(),
                format!("inline secret `{key}` in the ssh settings of {scope}"),
                format!("secrets never go in the inventory: set `{env_key} = \"VAR\"` and export the secret in that environment variable"),
            );
        }
    }
    if scope != "[ssh]"
        && let Some(c) = &raw.concurrency
    {
        ctx.report(
            ErrorKind::InvalidValue,
            Some(c.span()),
            format!("`concurrency` is not a per-host setting ({scope})"),
            "set `concurrency` once in the top-level `[ssh]` table, or pass `--concurrency`",
        );
    }

    let port = raw
        .port
        .as_ref()
        .and_then(|p| match u16::try_from(*p.get_ref()) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(p.span()),
                    format!("port {} is out of range", p.get_ref()),
                    "an SSH port is 1-65535 (default 22)",
                );
                None
            }
        });
    let user = raw.user.as_ref().map(|u| {
        let name = u.get_ref();
        let ok = !name.is_empty()
            && !name.starts_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            ctx.report(
                ErrorKind::InvalidValue,
                Some(u.span()),
                format!("`{name}` is not a user name"),
                "a user name is letters, digits, `_`, `-` or `.`, e.g. `user = \"pi\"`",
            );
        }
        name.clone()
    });
    let identity_files = raw.identity_files.as_ref().map(|files| {
        files
            .get_ref()
            .iter()
            .map(|file| {
                let path = ctx.resolve_path(file.get_ref());
                if !path.is_file() {
                    ctx.report(
                        ErrorKind::MissingFile,
                        Some(file.span()),
                        format!(
                            "identity file `{}` (ssh.identity_files of {scope}) does not exist",
                            path.display()
                        ),
                        "list private key files that exist (`~` is your home, relative paths start at the inventory's folder), or use `agent = true` with keys loaded in ssh-agent",
                    );
                } else if let Err(e) = super::files::identity_file(&path) {
                    ctx.invalid(ErrorKind::InvalidValue, file.span(), e);
                }
                path
            })
            .collect()
    });
    let host_key_policy = raw.host_key_policy.as_ref().and_then(|p| match p.get_ref().as_str() {
        "strict" => Some(HostKeyPolicy::Strict),
        "accept-new" => Some(HostKeyPolicy::AcceptNew),
        "off" => Some(HostKeyPolicy::Off),
        other => {
            let hint = formats::closest(other, ["strict", "accept-new", "off"])
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            ctx.report(
                ErrorKind::InvalidValue,
                Some(p.span()),
                format!("unknown host_key_policy `{other}`"),
                format!("{hint}expected `strict` (default: refuse unknown or changed keys), `accept-new` (learn unknown keys) or `off`"),
            );
            None
        }
    });
    let jump = raw.jump.as_ref().and_then(|j| {
        if j.get_ref().is_empty() {
            return Some(None);
        }
        match formats::jump(j.get_ref()) {
            Ok(jump) => Some(Some(jump)),
            Err(e) => {
                ctx.invalid(ErrorKind::InvalidValue, j.span(), e);
                None
            }
        }
    });
    let mut timeout = |value: &Option<Spanned<toml::Value>>, key: &str| {
        value
            .as_ref()
            .and_then(|v| match formats::duration(v.get_ref()) {
                Ok(d) => Some(d),
                Err(mut e) => {
                    e.message = format!("{key}: {}", e.message);
                    ctx.invalid(ErrorKind::InvalidValue, v.span(), e);
                    None
                }
            })
    };
    let connect_timeout = timeout(&raw.connect_timeout, "connect_timeout");
    let command_timeout = timeout(&raw.command_timeout, "command_timeout");
    let sudo = raw.sudo.as_ref().and_then(|s| {
        let mode = match s.get_ref().as_str() {
            "none" => SudoMode::None,
            "passwordless" => SudoMode::Passwordless,
            "password" => SudoMode::Password,
            other => {
                let hint = formats::closest(other, ["none", "passwordless", "password"])
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default();
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(s.span()),
                    format!("unknown sudo mode `{other}`"),
                    format!("{hint}expected `none` (already root), `passwordless` (`sudo -n`) or `password` (with `sudo_password_env`)"),
                );
                return None;
            }
        };
        Some((mode, s.span()))
    });
    SshLayer {
        user,
        port,
        identity_files,
        agent: raw.agent.as_ref().map(|a| *a.get_ref()),
        known_hosts: raw.known_hosts.as_ref().map(|k| {
            let path = ctx.resolve_path(k.get_ref());
            if let Err(e) = super::files::known_hosts(&path) {
                ctx.invalid(ErrorKind::InvalidValue, k.span(), e);
            }
            path
        }),
        host_key_policy,
        jump,
        connect_timeout,
        command_timeout,
        sudo,
        sudo_password_env: raw
            .sudo_password_env
            .as_ref()
            .map(|e| check_env_name(ctx, "sudo_password_env", e)),
        passphrase_env: raw
            .passphrase_env
            .as_ref()
            .map(|e| check_env_name(ctx, "passphrase_env", e)),
    }
}

/// A validated `[groups.NAME]`.
#[derive(Debug, Clone, Default)]
pub(super) struct GroupLayer {
    pub ssh: SshLayer,
    pub role: Option<(Role, Range<usize>)>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<String>,
    pub extra_args: Vec<String>,
}

pub(super) fn groups(
    ctx: &mut Ctx,
    raw: &BTreeMap<String, Spanned<RawGroup>>,
) -> BTreeMap<String, GroupLayer> {
    raw.iter()
        .map(|(name, group)| {
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid_name {
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(group.span()),
                    format!("group name `{name}` has characters `--limit @NAME` cannot select"),
                    "group names are letters, digits, `_` and `-`",
                );
            }
            let scope = format!("group `{name}`");
            let raw = group.get_ref();
            super::secret_args::check(ctx, &raw.extra_args, &format!("`extra_args` of {scope}"));
            let layer = GroupLayer {
                ssh: raw
                    .ssh
                    .as_ref()
                    .map(|s| ssh_layer(ctx, s.get_ref(), &scope))
                    .unwrap_or_default(),
                role: raw.role.as_ref().and_then(|r| role(ctx, r)),
                labels: labels(ctx, &raw.labels),
                taints: taints(ctx, &raw.taints),
                extra_args: raw
                    .k3s_config
                    .as_ref()
                    .map(|table| {
                        super::cluster_extras::k3s_config_flags(
                            ctx,
                            table.get_ref(),
                            &format!("[groups.{name}.k3s_config]"),
                        )
                    })
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, arg)| arg)
                    .chain(raw.extra_args.iter().map(|a| a.get_ref().clone()))
                    .collect(),
            };
            (name.clone(), layer)
        })
        .collect()
}

pub(super) fn role(ctx: &mut Ctx, raw: &Spanned<String>) -> Option<(Role, Range<usize>)> {
    match raw.get_ref().as_str() {
        "server" => Some((Role::Server, raw.span())),
        "agent" => Some((Role::Agent, raw.span())),
        other => {
            let hint = formats::closest(other, ["server", "agent"])
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            ctx.report(
                ErrorKind::InvalidValue,
                Some(raw.span()),
                format!("unknown role `{other}`"),
                format!("{hint}a role is `server` (control plane) or `agent` (worker)"),
            );
            None
        }
    }
}

pub(super) fn labels(
    ctx: &mut Ctx,
    raw: &BTreeMap<String, Spanned<String>>,
) -> BTreeMap<String, String> {
    for (key, value) in raw {
        if let Err(e) = formats::label_key(key) {
            ctx.invalid(ErrorKind::InvalidValue, value.span(), e);
        } else if let Err(e) = formats::label_value(key, value.get_ref()) {
            ctx.invalid(ErrorKind::InvalidValue, value.span(), e);
        }
    }
    raw.iter()
        .map(|(k, v)| (k.clone(), v.get_ref().clone()))
        .collect()
}

pub(super) fn taints(ctx: &mut Ctx, raw: &[Spanned<String>]) -> Vec<String> {
    raw.iter()
        .map(|t| {
            if let Err(e) = formats::taint(t.get_ref()) {
                ctx.invalid(ErrorKind::InvalidValue, t.span(), e);
            }
            t.get_ref().clone()
        })
        .collect()
}
