//! Exit codes and the errors that choose them: 0 all done, 1 some hosts failed, 2 bad input / nothing attempted.

use std::process::ExitCode;

/// Failures that decide the exit code on their own.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad flags or arguments that clap cannot see (e.g. a `--limit` matching nothing).
    #[error("{0}")]
    Usage(String),
    /// Some hosts failed; the per-host report has already been printed.
    #[error("{failed} of {total} hosts failed")]
    HostsFailed { failed: usize, total: usize },
}

pub const EXIT_OK: u8 = 0;
pub const EXIT_HOSTS_FAILED: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

/// Bad input (inventory, usage) is 2: nothing was attempted. Anything else is 1.
pub fn exit_code_for(err: &anyhow::Error) -> ExitCode {
    if err
        .downcast_ref::<crate::inventory::InventoryError>()
        .is_some()
    {
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    match err.downcast_ref::<Failure>() {
        Some(Failure::Usage(_)) => ExitCode::from(EXIT_BAD_INPUT),
        Some(Failure::HostsFailed { .. }) => ExitCode::from(EXIT_HOSTS_FAILED),
        None => ExitCode::from(EXIT_HOSTS_FAILED),
    }
}
