//! `edgeops plan INVENTORY`: what `up` would do on each host, decided from live facts (the
//! same phases as `up`, stopping after the decisions); changes nothing on any host.

use std::process::ExitCode;

use crate::cli::{GlobalArgs, InventoryArg};

use super::runs::{Work, run_one};

pub fn run(global: &GlobalArgs, args: &InventoryArg) -> anyhow::Result<ExitCode> {
    run_one(global, &args.inventory, Work::plan())
}
