//! What `up`, `plan`, `status`, `upgrade` and the other fleet commands prepare before any host
//! is touched: the inventory, the selected hosts (or the first server alone) and how to reach
//! them, a run's options and log (a missing secret is bad input, exit 2), the Ctrl-C wiring, and
//! the exit code of an `up`/`plan`/`status` run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{GlobalArgs, UpgradeArgs};
use crate::engine::Engine;
use crate::engine::runlog::{Redactor, RunLog};
use crate::exit::Failure;
use crate::fleet::FleetSettings;
use crate::gitlab::ClientOptions;
use crate::inventory::{self, Host, Inventory};
use crate::k3s::install::first_server;
use crate::k3s::token::{JoinToken, read_join_token, read_secret};
use crate::phases::gitlab::GitLabSetup;
use crate::phases::upgrade::{Target, UpgradeOptions};
use crate::phases::{KubeconfigTarget, Mode, Reboot, RunReport, Status, UpOptions};
use crate::ssh::{ConnectOptions, SshContext};
use secrecy::ExposeSecret;

/// What one cluster's `up` or `plan` needs besides its hosts, read before any host is touched
/// (a missing token is bad input, exit 2): the join token, the GitLab setup and the options,
/// with the redactor that knows their secrets. Fleet runs (`commands::fleet`) build one per
/// cluster, all before the first run log is made.
pub fn run_options(
    prepared: &Prepared,
    mode: Mode,
    ready_timeout: Duration,
    reboot: Reboot,
    rotate_tokens: bool,
    rotate_join_token: bool,
) -> anyhow::Result<(UpOptions, Redactor)> {
    let (token, redactor) = join_token(&prepared.inventory)?;
    if rotate_join_token && token.is_none() {
        return Err(Failure::Usage(format!(
            "{}: --rotate-join-token needs the new token in [cluster] token_env or token_file",
            prepared.inventory.path.display()
        ))
        .into());
    }
    if let Some(registries) = &prepared.inventory.registries {
        for secret in crate::k3s::registries::secret_values(registries)
            .map_err(|e| Failure::Usage(e.to_string()))?
        {
            redactor.add(&secret);
        }
    }
    let gitlab = gitlab_setup(&prepared.inventory, mode, ready_timeout, rotate_tokens)?;
    if let Some(token) = gitlab.as_ref().and_then(|g| g.api_token.as_ref()) {
        redactor.add(token.expose_secret());
    }
    let kubeconfig = match mode {
        Mode::Up => Some(KubeconfigTarget {
            path: default_kubeconfig_path()?,
            context: prepared.inventory.cluster.name.clone(),
        }),
        Mode::Plan => None,
    };
    let options = UpOptions {
        mode,
        ready_timeout,
        kubeconfig,
        token,
        reboot,
        gitlab,
        rotate_join_token,
    };
    Ok((options, redactor))
}

/// What one cluster's upgrade needs besides its hosts, read before any host is touched (a bad
/// `--limit` or token is bad input, exit 2): the options, with the redactor that knows the
/// token. Fleet runs (`commands::fleet`) build one per cluster.
pub fn upgrade_options(
    global: &GlobalArgs,
    prepared: &Prepared,
    args: &UpgradeArgs,
    target: Target,
) -> anyhow::Result<(UpgradeOptions, Redactor)> {
    let selected = selected_names(&prepared.inventory, global)?;
    let (token, redactor) = join_token(&prepared.inventory)?;
    let options = UpgradeOptions {
        target,
        batch_size: args.batch_size,
        drain: args.drain,
        drain_timeout: args.drain_timeout,
        force: args.force,
        ready_timeout: args.ready_timeout,
        token,
        selected,
        dry_run: args.dry_run,
    };
    Ok((options, redactor))
}

/// The cluster's join token, if the inventory names one (an unreadable one is bad input), and a
/// redactor that already knows it.
fn join_token(inventory: &Inventory) -> anyhow::Result<(Option<JoinToken>, Redactor)> {
    let token =
        read_join_token(&inventory.cluster.token).map_err(|e| Failure::Usage(e.to_string()))?;
    let redactor = Redactor::default();
    if let Some(token) = &token {
        redactor.add(token.expose());
    }
    Ok((token, redactor))
}

/// A redactor that knows the cluster's join token when the inventory names a readable one: the
/// commands that never send the token (reset, restore, backup, replace) still keep it out of
/// their logs.
pub fn token_redactor(inventory: &Inventory) -> Redactor {
    let redactor = Redactor::default();
    if let Ok(Some(token)) = read_join_token(&inventory.cluster.token) {
        redactor.add(token.expose());
    }
    redactor
}

/// The names of the hosts `--limit` selects (all without it); a bad pattern is bad input.
fn selected_names(inventory: &Inventory, global: &GlobalArgs) -> anyhow::Result<Vec<String>> {
    Ok(inventory::select(inventory, global.limit.as_deref())
        .map_err(|e| Failure::Usage(e.to_string()))?
        .into_iter()
        .map(|h| h.name.clone())
        .collect())
}

/// The run's log folder: `up` keeps one per run, `plan` none.
pub fn run_log(cluster: &str, mode: Mode, redactor: Redactor) -> RunLog {
    match mode {
        Mode::Up => RunLog::create(cluster, redactor),
        Mode::Plan => RunLog::disabled(redactor),
    }
}

/// What the GitLab phase needs, read before any host is touched: a missing API token is bad
/// input (exit 2). `plan` calls no GitLab endpoint, so it needs no token.
fn gitlab_setup(
    inventory: &Inventory,
    mode: Mode,
    deploy_timeout: Duration,
    rotate_tokens: bool,
) -> anyhow::Result<Option<GitLabSetup>> {
    let Some(gitlab) = &inventory.gitlab else {
        return Ok(None);
    };
    let api_token = match mode {
        Mode::Plan => None,
        Mode::Up => Some(
            read_secret(&gitlab.token, "GitLab API token")
                .map_err(|e| Failure::Usage(e.to_string()))?
                .ok_or_else(|| {
                    Failure::Usage("[gitlab] names no token_env or token_file".to_owned())
                })?,
        ),
    };
    Ok(Some(GitLabSetup {
        api_token,
        rotate_tokens,
        deploy_timeout,
        client: ClientOptions::default(),
    }))
}

/// The exit code for a finished run: 0 when every host (and the GitLab phase) is fine, else 1
/// (after the table).
pub fn outcome(report: &RunReport) -> anyhow::Result<ExitCode> {
    let failed = report.failed_hosts();
    if let (0, Some(gitlab)) = (failed, &report.gitlab)
        && gitlab.is_failure()
    {
        anyhow::bail!(
            "the GitLab phase {}: {}",
            if gitlab.status == Status::Skipped {
                "was skipped"
            } else {
                "failed"
            },
            gitlab.reason.as_deref().unwrap_or("see the GitLab table")
        );
    }
    if let (0, Some(reason)) = (failed, &report.kubeconfig_error) {
        anyhow::bail!("the kubeconfig was not merged: {reason}");
    }
    super::reports::hosts_failed(failed, report.hosts.len())?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C, SIGTERM or SIGHUP cancels the fleet's commands; the run then reports what it got
/// (a second signal exits at once: `interrupt`).
pub async fn with_interrupt<T>(ctx: &SshContext, work: impl Future<Output = T>) -> T {
    super::interrupt::with_interrupt(&ctx.cancel, work).await
}

/// The inventory, the hosts to work on and how to reach them.
pub struct Prepared {
    pub inventory: Inventory,
    /// The selection in inventory order, plus the first server when `--limit` left it out.
    pub hosts: Vec<Host>,
    pub targets: Vec<ConnectOptions>,
    pub ctx: SshContext,
    pub fleet_settings: FleetSettings,
}

impl Prepared {
    /// One session to each prepared host, under the prepared concurrency: the engine a
    /// command's phases run on.
    pub async fn connect(
        &self,
        log: RunLog,
        observer: std::sync::Arc<dyn crate::phases::Observer>,
    ) -> Engine {
        let (targets, ctx) = (self.targets.clone(), self.ctx.clone());
        Engine::connect(targets, ctx, self.fleet_settings.clone(), log, observer).await
    }
}

pub fn prepare(
    global: &GlobalArgs,
    path: &std::path::Path,
    need_sudo: bool,
) -> anyhow::Result<Prepared> {
    let inventory = inventory::load(path)?;
    let first = first_server(&inventory)
        .map_err(|e| Failure::Usage(e.to_string()))?
        .name
        .clone();
    let selected = selected_names(&inventory, global)?;
    let hosts: Vec<Host> = inventory
        .hosts
        .iter()
        .filter(|h| h.name == first || selected.contains(&h.name))
        .cloned()
        .collect();
    let refs: Vec<&Host> = hosts.iter().collect();
    let setup = super::exec::ssh_setup(&refs, need_sudo)?;
    let fleet_settings = FleetSettings {
        concurrency: global.concurrency.unwrap_or(inventory.concurrency).max(1),
        ..Default::default()
    };
    Ok(Prepared {
        targets: setup.targets,
        ctx: setup.ctx,
        inventory,
        hosts,
        fleet_settings,
    })
}

/// The inventory and how to reach its first server, for the commands that talk to it alone
/// (`kubeconfig`, `unlock`).
pub struct FirstServer {
    pub inventory: Inventory,
    /// The first server's name.
    pub host: String,
    target: ConnectOptions,
    ctx: SshContext,
}

impl FirstServer {
    /// The engine over one session to the first server (no progress shown, no run log): its
    /// commands logged nowhere but redacted, counted and their failures typed like any run's.
    pub async fn connect(&self) -> Engine {
        let (targets, ctx) = (vec![self.target.clone()], self.ctx.clone());
        let log = RunLog::disabled(Redactor::default());
        let quiet = std::sync::Arc::new(crate::phases::Quiet);
        Engine::connect(targets, ctx, FleetSettings::default(), log, quiet).await
    }
}

pub fn first_server_only(path: &std::path::Path) -> anyhow::Result<FirstServer> {
    let inventory = inventory::load(path)?;
    let first = first_server(&inventory).map_err(|e| Failure::Usage(e.to_string()))?;
    let host = first.name.clone();
    let setup = super::exec::ssh_setup(&[first], true)?;
    let target = setup
        .targets
        .into_iter()
        .next()
        .expect("one target per host");
    Ok(FirstServer {
        host,
        target,
        ctx: setup.ctx,
        inventory,
    })
}

/// `$KUBECONFIG`'s first file, else `~/.kube/config` (where kubectl looks).
pub fn default_kubeconfig_path() -> anyhow::Result<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| anyhow::anyhow!("HOME is not set: cannot find ~/.kube/config"))?;
    Ok(PathBuf::from(home).join(".kube/config"))
}
