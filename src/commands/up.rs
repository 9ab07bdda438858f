//! `edgeops up INVENTORY`: every host to a Ready k3s cluster (idempotent), with live progress
//! and a per-host table at the end: arguments → options → the run → the report → exit code.

use std::process::ExitCode;

use crate::cli::{GlobalArgs, UpArgs};

use super::runs::{Work, run_one};

pub fn run(global: &GlobalArgs, args: &UpArgs) -> anyhow::Result<ExitCode> {
    run_one(global, &args.inventory, Work::up(args))
}
