//! `edgeops status INVENTORY`: facts per host (OS, arch, k3s version and service state, whether
//! edgeops's config is recorded), the cluster's node readiness table and, with `[gitlab]`, the
//! GitLab charts' state; changes nothing.

use std::process::ExitCode;

use crate::cli::{GlobalArgs, InventoryArg};

use super::runs::{Work, run_one};

pub fn run(global: &GlobalArgs, args: &InventoryArg) -> anyhow::Result<ExitCode> {
    run_one(global, &args.inventory, Work::Status)
}
