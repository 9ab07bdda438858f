//! `edgeops plan INVENTORY`: what `up` would do on each host, decided from live facts (the
//! same phases as `up`, stopping after the decisions); changes nothing on any host.

use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{GlobalArgs, InventoryArg};
use crate::phases::{Mode, Reboot};

pub fn run(global: &GlobalArgs, args: &InventoryArg) -> anyhow::Result<ExitCode> {
    super::up::run_phases(
        global,
        &args.inventory,
        Mode::Plan,
        Duration::ZERO,
        Reboot::AllAtOnce,
    )
}
