//! `edgeops upgrade INVENTORY --version V | --channel C`: a rolling k3s upgrade (servers one at
//! a time, then agents in batches), with the same progress view as `up` and a per-host table
//! (`FROM → TO`) or JSON at the end. Exit codes as `up`: 0, 1 some host failed, 2 bad input or a
//! refused downgrade (nothing changed).

use std::process::ExitCode;

use crate::cli::{GlobalArgs, UpgradeArgs};

use super::runs::{Work, run_one};

pub fn run(global: &GlobalArgs, args: &UpgradeArgs) -> anyhow::Result<ExitCode> {
    run_one(global, &args.inventory, Work::upgrade(args)?)
}
