//! `edgeops bootstrap INVENTORY`: `ssh-copy-id` for the whole fleet at once. Logs in with a
//! password (from an environment variable or a 0600 file, never a flag value), adds the
//! inventory's public key to the user's `authorized_keys` unless it is there, and with
//! `--sudo-nopasswd` installs a visudo-checked sudoers drop-in. A second run changes nothing.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use russh::keys::PublicKey;
use secrecy::SecretString;

use crate::cli::{BootstrapArgs, GlobalArgs, OutputFormat};
use crate::exit::Failure;
use crate::fleet::{Fleet, FleetSettings, StepError};
use crate::inventory;
use crate::report::ProgressView;
use crate::shell::with_vars;
use crate::ssh::{Credentials, ExecRequest, Session, SudoMode};

use super::exec::{SshSetup, ssh_setup};

/// What bootstrap did on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    key_added: bool,
    /// `None`: sudo not asked for (no `--sudo-nopasswd`, or the user is root).
    sudo: Option<SudoOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SudoOutcome {
    /// Passwordless sudo already worked.
    Present,
    /// The drop-in was written (and checked by visudo).
    Installed,
}

pub fn run(global: &GlobalArgs, args: &BootstrapArgs) -> anyhow::Result<ExitCode> {
    let inventory = inventory::load(&args.inventory)?;
    let hosts = inventory::select(&inventory, global.limit.as_deref())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let password = read_password(args).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let SshSetup { ctx, mut targets } = ssh_setup(&hosts, false)?;

    let given_key = match &args.public_key {
        Some(file) => Some(read_public_key(file).map_err(|e| Failure::Usage(format!("{e:#}")))?),
        None => None,
    };
    let mut keys = Vec::with_capacity(targets.len());
    for target in &mut targets {
        let key = match (&given_key, target.credentials.identities.first()) {
            (Some(key), _) => key.clone(),
            (None, Some(identity)) => identity.key.public_key().clone(),
            (None, None) => {
                return Err(Failure::Usage(format!(
                    "{}: no identity file in the inventory to take the public key from; pass \
                     --public-key FILE",
                    target.name
                ))
                .into());
            }
        };
        keys.push((target.name.clone(), key));
        // Keys first (a board already bootstrapped never sees the password), then the password.
        target.credentials = Arc::new(Credentials {
            password: Some(password.clone()),
            ..(*target.credentials).clone()
        });
        target.sudo = if target.user == "root" || !args.sudo_nopasswd {
            SudoMode::None
        } else {
            SudoMode::Password(password.clone())
        };
    }

    let text = global.output == OutputFormat::Text;
    let progress = Arc::new(ProgressView::new(super::fan_out_progress(global)));
    let settings = FleetSettings {
        concurrency: global.hosts_at_once(&inventory),
        ..Default::default()
    };
    let total = targets.len();
    let runtime = super::runtime()?;
    let results = runtime.block_on(async {
        let interrupt = super::interrupt::spawn_watch(ctx.cancel.clone());
        let keys = &keys;
        let want_sudo = args.sudo_nopasswd;
        let (fleet, results) = Fleet::connect_and_run(
            targets,
            ctx,
            settings,
            progress.clone(),
            "bootstrap",
            |session| {
                let key = keys
                    .iter()
                    .find(|(name, _)| name == session.name())
                    .map(|(_, key)| key.clone())
                    .expect("a key per host");
                async move { bootstrap_host(&session, &key, want_sudo).await }
            },
        )
        .await;
        fleet.close_all().await;
        interrupt.abort();
        results
    });
    progress.finish();

    let mut rows = vec![
        ["HOST", "AUTHORIZED_KEYS", "SUDO", "RESULT"]
            .map(String::from)
            .to_vec(),
    ];
    let mut changed = 0;
    let mut failed = 0;
    let mut json = Vec::new();
    for result in &results {
        let (key, sudo, outcome) = match &result.outcome {
            Ok(o) => {
                let did = o.key_added || o.sudo == Some(SudoOutcome::Installed);
                changed += usize::from(did);
                (
                    if o.key_added {
                        "key added"
                    } else {
                        "key present"
                    }
                    .to_string(),
                    match o.sudo {
                        None => "-".to_string(),
                        Some(SudoOutcome::Present) => "passwordless already".to_string(),
                        Some(SudoOutcome::Installed) => "drop-in installed".to_string(),
                    },
                    if did { "changed" } else { "nothing to do" }.to_string(),
                )
            }
            Err(err) => {
                failed += 1;
                ("-".into(), "-".into(), format!("failed: {err}"))
            }
        };
        json.push(serde_json::json!({
            "host": result.host, "authorized_keys": key, "sudo": sudo, "result": outcome,
        }));
        rows.push(vec![result.host.clone(), key, sudo, outcome]);
    }
    let mut out = std::io::stdout().lock();
    if text {
        write!(out, "{}", super::run_tables::table(&rows))?;
        writeln!(
            out,
            "{total} host(s): {changed} changed, {} nothing to do, {failed} failed",
            total - changed - failed
        )?;
    } else {
        for line in json {
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    super::reports::hosts_failed(failed, total)?;
    Ok(ExitCode::SUCCESS)
}

/// The login password: from `--password-file` (which must not be readable by others), else
/// from the environment variable.
fn read_password(args: &BootstrapArgs) -> anyhow::Result<SecretString> {
    if let Some(file) = &args.password_file {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(file).with_context(|| format!("password file {}", file.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            anyhow::bail!(
                "password file {} is readable by others (mode {:o}); chmod 600 it",
                file.display(),
                meta.permissions().mode() & 0o777
            );
        }
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading password file {}", file.display()))?;
        let line = text.lines().next().unwrap_or_default().to_string();
        if line.is_empty() {
            anyhow::bail!("password file {} is empty", file.display());
        }
        return Ok(SecretString::from(line));
    }
    match std::env::var(&args.password_env) {
        Ok(value) if !value.is_empty() => Ok(SecretString::from(value)),
        _ => anyhow::bail!(
            "the login password comes from ${} (or --password-file FILE), which is not set",
            args.password_env
        ),
    }
}

fn read_public_key(file: &Path) -> anyhow::Result<PublicKey> {
    russh::keys::load_public_key(file)
        .with_context(|| format!("reading public key {}", file.display()))
}

/// The `authorized_keys` line for `key`: type, base64 and a comment naming edgeops.
fn authorized_line(key: &PublicKey) -> anyhow::Result<(String, String)> {
    let openssh = key.to_openssh().context("encoding the public key")?;
    let mut fields = openssh.split(' ');
    let (Some(kind), Some(base64)) = (fields.next(), fields.next()) else {
        anyhow::bail!("cannot encode the public key");
    };
    let comment = match key.comment().as_str_lossy() {
        "" => "edgeops".to_string(),
        c => c.to_string(),
    };
    Ok((base64.to_string(), format!("{kind} {base64} {comment}")))
}

/// Adds the key if missing (as the login user), and reports whether sudo already works without
/// a password. One round trip.
fn key_script(base64: &str, line: &str) -> String {
    with_vars(
        &[("key", base64), ("line", line)],
        include_str!("sh/bootstrap-key.sh"),
    )
}

/// Writes the sudoers drop-in through a temporary file that visudo checks before it is moved
/// into place (sudo ignores names with a dot, so the temporary one is never read half-written).
fn sudo_script(user: &str) -> String {
    let file_name: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let rule = format!("{user} ALL=(ALL:ALL) NOPASSWD: ALL");
    with_vars(
        &[
            ("dest", &format!("/etc/sudoers.d/edgeops-{file_name}")),
            ("rule", &rule),
        ],
        include_str!("sh/bootstrap-sudo.sh"),
    )
}

async fn bootstrap_host(
    session: &Session,
    key: &PublicKey,
    want_sudo: bool,
) -> Result<Outcome, StepError> {
    let (base64, line) = authorized_line(key)?;
    let out = session
        .exec(&ExecRequest::new(key_script(&base64, &line)))
        .await?;
    let stdout = out.stdout_lossy();
    if !out.success() {
        return Err(anyhow::anyhow!(
            "installing the key failed ({}): {}",
            out.exit,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let key_added = stdout.lines().any(|l| l == "key:added");
    let sudo_works = stdout.lines().any(|l| l == "sudo:passwordless");
    let opts = session.options();
    let sudo = if !want_sudo || opts.user == "root" {
        None
    } else if sudo_works {
        Some(SudoOutcome::Present)
    } else {
        let out = session
            .exec(&ExecRequest::new(sudo_script(&opts.user)).sudo(true))
            .await?;
        if !out.success() {
            return Err(anyhow::anyhow!(
                "installing the sudoers drop-in failed ({}): {}",
                out.exit,
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Some(SudoOutcome::Installed)
    };
    Ok(Outcome { key_added, sudo })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_rule_is_quoted_and_file_name_is_one_sudo_reads() {
        let script = sudo_script("pi.admin");
        assert!(script.contains("dest=/etc/sudoers.d/edgeops-pi_admin\n"));
        assert!(script.contains("'pi.admin ALL=(ALL:ALL) NOPASSWD: ALL'"));
        assert!(script.contains("visudo -cqf"));
    }

    #[test]
    fn authorized_line_keeps_type_and_base64() {
        let key = russh::keys::parse_public_key_base64(
            "AAAAC3NzaC1lZDI1NTE5AAAAIKP9q3oGDqfotxcrFc0TuXbRleBatw7AyUjj2ON8V4cZ",
        )
        .unwrap();
        let (base64, line) = authorized_line(&key).unwrap();
        assert_eq!(
            line,
            format!("ssh-ed25519 {base64} edgeops"),
            "a key without a comment gets `edgeops`"
        );
    }
}
