//! One cluster's `up`, `plan`, `status` or `upgrade`, the one path from the command line to the
//! exit code that single-inventory commands and fleet runs (`commands::fleet`) share: what the
//! command asks for ([`Work`]), the options read from the inventory before any host is touched
//! ([`Setup`]), the run on the phases, its report ([`ClusterReport`]) and its exit code.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{GlobalArgs, UpArgs, UpgradeArgs};
use crate::engine::Engine;
use crate::engine::runlog::{Redactor, RunLog};
use crate::exit::Failure;
use crate::fleet::FleetSettings;
use crate::k3s::{Channel, K3sVersion};
use crate::phases::upgrade::{self, Target, UpgradeError, UpgradeOptions, UpgradeReport};
use crate::phases::{self, Mode, Observer, Reboot, RunReport, UpOptions};

use super::reports;
use super::run_setup::{Prepared, outcome, prepare, run_log, run_options, upgrade_options};

/// What the command line asks of each cluster.
#[derive(Debug, Clone)]
pub enum Work<'a> {
    /// `up` (or `plan` / `up --dry-run` with `Mode::Plan`).
    Up {
        mode: Mode,
        ready_timeout: Duration,
        reboot: Reboot,
        rotate_tokens: bool,
        rotate_join_token: bool,
    },
    Status,
    /// `upgrade` to one target (for every cluster of a fleet run).
    Upgrade(&'a UpgradeArgs, Target),
}

impl<'a> Work<'a> {
    /// `edgeops up`'s flags.
    pub fn up(args: &UpArgs) -> Work<'static> {
        let reboot = if args.no_reboot {
            Reboot::Never
        } else if args.serial {
            Reboot::Serial
        } else {
            Reboot::AllAtOnce
        };
        Work::Up {
            mode: if args.dry_run { Mode::Plan } else { Mode::Up },
            ready_timeout: args.ready_timeout,
            reboot,
            rotate_tokens: args.rotate_tokens,
            rotate_join_token: args.rotate_join_token,
        }
    }

    /// `edgeops plan`: `up`'s phases, stopping after the decisions.
    pub fn plan() -> Work<'static> {
        Work::Up {
            mode: Mode::Plan,
            ready_timeout: Duration::ZERO,
            reboot: Reboot::AllAtOnce,
            rotate_tokens: false,
            rotate_join_token: false,
        }
    }

    /// `edgeops upgrade`'s target and batch size, checked before anything is read (bad input,
    /// exit 2).
    pub fn upgrade(args: &'a UpgradeArgs) -> anyhow::Result<Work<'a>> {
        let target = target(args)?;
        if args.batch_size == 0 {
            return Err(Failure::Usage("--batch-size must be at least 1".into()).into());
        }
        Ok(Work::Upgrade(args, target))
    }

    /// `plan` only reads facts a user may read; everything else needs sudo.
    pub fn needs_sudo(&self) -> bool {
        !matches!(
            self,
            Work::Up {
                mode: Mode::Plan,
                ..
            }
        )
    }

    /// The cluster's options, read from its inventory and secrets before any host is touched
    /// (a missing token or a bad `--limit` is bad input, exit 2).
    pub fn setup(&self, global: &GlobalArgs, prepared: &Prepared) -> anyhow::Result<Setup> {
        Ok(match self {
            Work::Up {
                mode,
                ready_timeout,
                reboot,
                rotate_tokens,
                rotate_join_token,
            } => {
                let (options, redactor) = run_options(
                    prepared,
                    *mode,
                    *ready_timeout,
                    *reboot,
                    *rotate_tokens,
                    *rotate_join_token,
                )?;
                Setup::Up(options, redactor)
            }
            Work::Status => Setup::Status,
            Work::Upgrade(args, target) => {
                let (options, redactor) = upgrade_options(global, prepared, args, target.clone())?;
                Setup::Upgrade(options, redactor)
            }
        })
    }
}

/// `--version` or `--channel` (exactly one), parsed; a bad one is bad input (exit 2).
pub fn target(args: &UpgradeArgs) -> anyhow::Result<Target> {
    match (&args.version, &args.channel) {
        (Some(version), None) => Ok(Target::Version(
            version
                .parse::<K3sVersion>()
                .map_err(|e| Failure::Usage(format!("--version: {e}")))?,
        )),
        (None, Some(channel)) => Ok(Target::Channel(
            channel
                .parse::<Channel>()
                .map_err(|e| Failure::Usage(format!("--channel: {e}")))?,
        )),
        _ => Err(Failure::Usage(
            "give the target: --version V (e.g. v1.31.4+k3s1) or --channel C (e.g. stable, v1.31)"
                .into(),
        )
        .into()),
    }
}

/// One cluster's options, with the redactor that knows its secrets.
pub enum Setup {
    Up(UpOptions, Redactor),
    Status,
    Upgrade(UpgradeOptions, Redactor),
}

/// A cluster's report, as its own command's `-o json` gives it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ClusterReport {
    /// `up`, `plan`, `status`.
    Run(RunReport),
    Upgrade(UpgradeReport),
}

impl ClusterReport {
    /// 0 when every host (and `up`'s GitLab phase and kubeconfig) is fine, else the error the
    /// command exits 1 with (after its report).
    pub fn exit_code(&self) -> anyhow::Result<ExitCode> {
        match self {
            ClusterReport::Run(report) => outcome(report),
            ClusterReport::Upgrade(report) => {
                reports::hosts_failed(report.failed_hosts(), report.hosts.len())?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// Runs one prepared cluster: the run log is made only now (a bad inventory elsewhere in a
/// fleet leaves none), `fleet` is the concurrency the run works under.
pub async fn run_cluster(
    prepared: &Prepared,
    setup: Setup,
    fleet: FleetSettings,
    observer: Arc<dyn Observer>,
) -> anyhow::Result<ClusterReport> {
    let Prepared {
        inventory,
        hosts,
        targets,
        ctx,
        ..
    } = prepared;
    let name = &inventory.cluster.name;
    let connect = |log| Engine::connect(targets.clone(), ctx.clone(), fleet.clone(), log, observer);
    match setup {
        Setup::Up(options, redactor) => {
            let engine = connect(run_log(name, options.mode, redactor)).await;
            phases::run(engine, inventory, hosts, options)
                .await
                .map(ClusterReport::Run)
        }
        Setup::Status => {
            let engine = connect(RunLog::disabled(Default::default())).await;
            phases::status(engine, inventory, hosts)
                .await
                .map(ClusterReport::Run)
        }
        Setup::Upgrade(options, redactor) => {
            let engine = connect(RunLog::create(name, redactor)).await;
            upgrade::run(engine, inventory, hosts, options)
                .await
                .map(ClusterReport::Upgrade)
        }
    }
}

/// The report as the command prints it (`status` has its own table of facts).
pub fn print(global: &GlobalArgs, work: &Work<'_>, report: &ClusterReport) -> anyhow::Result<()> {
    match (work, report) {
        (Work::Status, ClusterReport::Run(run)) => {
            reports::print(global, run, reports::status_text)
        }
        (_, ClusterReport::Run(run)) => reports::print(global, run, reports::run_text),
        (_, ClusterReport::Upgrade(run)) => reports::print(global, run, |run| {
            Ok::<_, std::fmt::Error>(reports::upgrade_text(run))
        }),
    }
}

/// A single-inventory `up`, `plan`, `status` or `upgrade`: prepare, read the options, run with
/// live progress (Ctrl-C cancels), print the report, exit code.
pub fn run_one(global: &GlobalArgs, path: &Path, work: Work<'_>) -> anyhow::Result<ExitCode> {
    let prepared = prepare(global, path, work.needs_sudo())?;
    let setup = work.setup(global, &prepared)?;
    let view = super::run_progress(global);
    let observer: Arc<dyn Observer> = view.clone();
    let runtime = super::runtime()?;
    let fleet = prepared.fleet_settings.clone();
    let report = runtime.block_on(super::run_setup::with_interrupt(
        &prepared.ctx,
        run_cluster(&prepared, setup, fleet, observer),
    ));
    view.finish();
    let report = report.map_err(refused_as_bad_input)?;
    print(global, &work, &report)?;
    report.exit_code()
}

/// A refused downgrade or version skew is bad input: nothing was changed (exit 2).
fn refused_as_bad_input(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<UpgradeError>() {
        Some(
            refused @ (UpgradeError::Downgrade { .. }
            | UpgradeError::ServersBehind { .. }
            | UpgradeError::Quorum { .. }
            | UpgradeError::SkipsMinor(_)),
        ) => Failure::Usage(refused.to_string()).into(),
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses_version_as_the_target() {
        use clap::{CommandFactory, Parser};
        // Every subcommand's arguments are unique (the program's own `--version` is not
        // propagated into `upgrade`, whose `--version` is the target).
        crate::cli::Cli::command().debug_assert();
        let cli = crate::cli::Cli::try_parse_from([
            "edgeops",
            "upgrade",
            "inv.toml",
            "--version",
            "v1.31.4+k3s1",
        ])
        .unwrap();
        let crate::cli::Command::Upgrade(args) = cli.command else {
            panic!("not upgrade");
        };
        assert!(
            matches!(target(&args).unwrap(), Target::Version(v) if v.to_string() == "v1.31.4+k3s1")
        );
        let both = crate::cli::Cli::try_parse_from([
            "edgeops",
            "upgrade",
            "inv.toml",
            "--version",
            "v1.31.4+k3s1",
            "--channel",
            "stable",
        ]);
        assert!(both.is_err(), "--version and --channel conflict");
        let cli = crate::cli::Cli::try_parse_from(["edgeops", "upgrade", "inv.toml"]).unwrap();
        let crate::cli::Command::Upgrade(args) = cli.command else {
            panic!("not upgrade");
        };
        assert!(target(&args).is_err(), "a target is required");
    }

    #[test]
    fn plan_needs_no_sudo_and_every_other_run_does() {
        assert!(!Work::plan().needs_sudo());
        assert!(Work::Status.needs_sudo());
        let up = Work::Up {
            mode: Mode::Up,
            ready_timeout: Duration::ZERO,
            reboot: Reboot::Never,
            rotate_tokens: false,
            rotate_join_token: false,
        };
        assert!(up.needs_sudo());
    }
}
