//! `edgeops up INVENTORY`: every host to a Ready k3s cluster (idempotent), with live progress
//! and a per-host table at the end: arguments → options → the run → the report → exit code.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{GlobalArgs, UpArgs};
use crate::phases::{self, Mode, Observer, Reboot};

use super::run_setup::{Prepared, outcome, prepare, run_log, run_options, with_interrupt};
use super::run_tables::print_report;

pub fn run(global: &GlobalArgs, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let mode = if args.dry_run { Mode::Plan } else { Mode::Up };
    let reboot = if args.no_reboot {
        Reboot::Never
    } else if args.serial {
        Reboot::Serial
    } else {
        Reboot::AllAtOnce
    };
    run_phases_with(
        global,
        &args.inventory,
        mode,
        args.ready_timeout,
        reboot,
        args.rotate_tokens,
        args.rotate_join_token,
    )
}

/// `up` and `plan`: the same phases, `plan` stopping after the decisions.
pub fn run_phases(
    global: &GlobalArgs,
    path: &std::path::Path,
    mode: Mode,
    ready_timeout: Duration,
    reboot: Reboot,
) -> anyhow::Result<ExitCode> {
    run_phases_with(global, path, mode, ready_timeout, reboot, false, false)
}

/// `run_phases`, with `--rotate-tokens` for the GitLab phase.
fn run_phases_with(
    global: &GlobalArgs,
    path: &std::path::Path,
    mode: Mode,
    ready_timeout: Duration,
    reboot: Reboot,
    rotate_tokens: bool,
    rotate_join_token: bool,
) -> anyhow::Result<ExitCode> {
    let prepared = prepare(global, path, mode == Mode::Up)?;
    let (options, redactor) = run_options(
        &prepared,
        mode,
        ready_timeout,
        reboot,
        rotate_tokens,
        rotate_join_token,
    )?;
    let log = run_log(&prepared.inventory.cluster.name, mode, redactor);
    let view = super::run_progress(global);
    let observer: Arc<dyn Observer> = view.clone();
    let runtime = super::runtime()?;
    let report = runtime.block_on(async {
        let Prepared {
            inventory,
            hosts,
            targets,
            ctx,
            ..
        } = &prepared;
        with_interrupt(
            ctx,
            phases::run(
                inventory,
                hosts.clone(),
                targets.clone(),
                ctx.clone(),
                options,
                observer,
                log,
            ),
        )
        .await
    });
    view.finish();
    let report = report?;
    print_report(global, &report)?;
    outcome(&report)
}
