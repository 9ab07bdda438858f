//! `edgeops exec INVENTORY -- CMD`: run one command on the selected hosts at once, like pdsh.
//! Also home of the inventory → ssh conversion (`ssh_setup`), which keeps the ssh and fleet
//! modules free of the inventory format.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use secrecy::SecretString;

use crate::cli::{ExecArgs, GlobalArgs, OutputFormat};
use crate::exit::Failure;
use crate::fleet::{Fleet, FleetSettings};
use crate::inventory::{self, Host, Inventory};
use crate::report::{self, PrefixedLines, ProgressView};
use crate::ssh::{
    ConnectOptions, Credentials, ExecRequest, HostKeyPolicy, JumpOptions, KeyStore, KnownHosts,
    PassphraseSource, SshContext, SudoMode,
};

pub fn run(global: &GlobalArgs, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let inventory = inventory::load(&args.inventory)?;
    let hosts = inventory::select(&inventory, global.limit.as_deref())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let setup = ssh_setup(&hosts, args.sudo)?;
    let command = args.command.join(" ");
    let runtime = super::runtime()?;
    runtime.block_on(fan_out(global, args, &inventory, setup, command))
}

/// What a run needs to reach its hosts: one shared context and per-host options.
pub struct SshSetup {
    pub ctx: SshContext,
    pub targets: Vec<ConnectOptions>,
}

/// Build the shared SSH state for `hosts`: known_hosts read once (`~/.ssh/known_hosts` plus the
/// inventory's files), each key loaded once however many hosts use it, the sudo password read
/// once. Only reads a sudo password when `need_sudo`.
pub fn ssh_setup(hosts: &[&Host], need_sudo: bool) -> anyhow::Result<SshSetup> {
    // The user's ssh_config fills in what the inventory leaves to defaults.
    let reached = super::reach::resolve_all(hosts)?;
    let merged: Vec<&Host> = reached.iter().map(|r| &r.host).collect();
    let hosts = &merged[..];
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut files: Vec<PathBuf> = home.iter().map(|h| h.join(".ssh/known_hosts")).collect();
    let mut learn_file = None;
    for host in hosts {
        if let Some(file) = &host.ssh.known_hosts {
            learn_file.get_or_insert_with(|| file.clone());
            if !files.contains(file) {
                files.push(file.clone());
            }
        }
    }
    for file in reached.iter().flat_map(|r| &r.extra_known_hosts) {
        if !files.contains(file) {
            files.push(file.clone());
        }
    }
    // Without an inventory file, new keys go where OpenSSH would put them.
    let learn_file = learn_file.or_else(|| files.first().cloned());
    let known = KnownHosts::load(&files, learn_file).context("reading known_hosts")?;
    for origin in &known.skipped {
        tracing::warn!("{origin}: known_hosts line not understood; ignored");
    }
    let ctx = SshContext::new(known);

    let mut keys = KeyStore::new();
    let mut credentials: HashMap<(Vec<PathBuf>, bool), Arc<Credentials>> = HashMap::new();
    let mut passwords: HashMap<String, SecretString> = HashMap::new();
    let mut targets = Vec::with_capacity(hosts.len());
    for host in hosts {
        let ssh = &host.ssh;
        let cache_key = (ssh.identity_files.clone(), ssh.use_agent);
        let creds = match credentials.get(&cache_key) {
            Some(creds) => creds.clone(),
            None => {
                let mut sources = Vec::new();
                if let Some(var) = &ssh.passphrase_env {
                    sources.push(PassphraseSource::Env(var.clone()));
                }
                sources.push(PassphraseSource::Prompt);
                let mut identities = Vec::new();
                for path in &ssh.identity_files {
                    identities.push(keys.load(path, &sources)?);
                }
                let creds = Arc::new(Credentials {
                    identities,
                    use_agent: ssh.use_agent,
                    password: None,
                });
                credentials.insert(cache_key, creds.clone());
                creds
            }
        };
        let sudo = match &ssh.sudo {
            inventory::Sudo::None => SudoMode::None,
            inventory::Sudo::Passwordless => SudoMode::Passwordless,
            inventory::Sudo::Password { env } if need_sudo => {
                let password = match passwords.get(env) {
                    Some(p) => p.clone(),
                    None => {
                        let value = std::env::var(env).map_err(|_| {
                            Failure::Usage(format!(
                                "{}: the sudo password comes from ${env}, which is not set",
                                host.name
                            ))
                        })?;
                        let secret = SecretString::from(value);
                        passwords.insert(env.clone(), secret.clone());
                        secret
                    }
                };
                SudoMode::Password(password)
            }
            inventory::Sudo::Password { .. } => SudoMode::None,
        };
        targets.push(ConnectOptions {
            name: host.name.clone(),
            address: host.address.clone(),
            port: ssh.port,
            user: ssh.user.clone(),
            credentials: creds,
            host_key_policy: match ssh.host_key_policy {
                inventory::HostKeyPolicy::Strict => HostKeyPolicy::Strict,
                inventory::HostKeyPolicy::AcceptNew => HostKeyPolicy::AcceptNew,
                inventory::HostKeyPolicy::Off => HostKeyPolicy::Off,
            },
            jump: ssh.jump.as_ref().map(|j| JumpOptions {
                address: j.address.clone(),
                port: j.port,
                user: j.user.clone().unwrap_or_else(|| ssh.user.clone()),
                via: None,
            }),
            proxy_command: None,
            connect_timeout: ssh.connect_timeout,
            command_timeout: ssh.command_timeout,
            sudo,
        });
    }
    super::reach::finish(&reached, &mut targets);
    Ok(SshSetup { ctx, targets })
}

async fn fan_out(
    global: &GlobalArgs,
    args: &ExecArgs,
    inventory: &Inventory,
    setup: SshSetup,
    command: String,
) -> anyhow::Result<ExitCode> {
    let SshSetup { ctx, targets } = setup;
    let total = targets.len();
    let text = global.output == OutputFormat::Text;
    let progress = Arc::new(ProgressView::new(super::fan_out_progress(global)));
    let settings = FleetSettings {
        concurrency: global.hosts_at_once(inventory),
        ..Default::default()
    };

    let interrupt = super::interrupt::spawn_watch(ctx.cancel.clone());

    let stream_live = text && !args.group;
    let request = ExecRequest {
        command,
        sudo: args.sudo,
        stdin: None,
        timeout: args.timeout,
        ignore_cancel: false,
        max_output: None,
    };
    // Each host runs the command as soon as its own connection is up (no connect barrier).
    let (fleet, results) = Fleet::connect_and_run(
        targets,
        ctx,
        settings,
        progress.clone(),
        "exec",
        |session| {
            let request = &request;
            let progress = progress.clone();
            async move {
                if stream_live {
                    let mut sink = PrefixedLines::new(session.name(), progress);
                    let result = session.exec_streaming(request, &mut sink).await;
                    sink.finish();
                    Ok(result?)
                } else {
                    Ok(session.exec(request).await?)
                }
            }
        },
    )
    .await;
    fleet.close_all().await;
    interrupt.abort();
    progress.finish();

    let mut stdout = std::io::stdout().lock();
    match global.output {
        OutputFormat::Json => {
            for result in &results {
                writeln!(stdout, "{}", report::json_line(result))?;
            }
        }
        OutputFormat::Text => {
            if args.group {
                write!(stdout, "{}", report::render_grouped(&results))?;
            }
            stdout.flush()?;
            eprint!("{}", report::render_summary(&results));
        }
    }
    let failed = results
        .iter()
        .filter(|r| report::status_of(&r.outcome) != "ok")
        .count();
    super::reports::hosts_failed(failed, total)?;
    Ok(ExitCode::SUCCESS)
}
