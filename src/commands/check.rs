//! `edgeops check INVENTORY`: validate offline and print a summary.

use std::process::ExitCode;

use crate::cli::{GlobalArgs, InventoryArg};

pub fn run(_global: &GlobalArgs, args: &InventoryArg) -> anyhow::Result<ExitCode> {
    let inventory = crate::inventory::load(&args.inventory)?;
    println!("{} hosts", inventory.hosts.len());
    Ok(ExitCode::SUCCESS)
}
