//! The one way a command's final report goes out on stdout: the report as JSON with `--output
//! json`, else the command's own text (a table and notes); and the exit it gives when hosts
//! failed.

use std::io::{StdoutLock, Write};

use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat};

/// Print `report` as JSON, or as `text` writes it.
pub fn print<R: Serialize>(
    global: &GlobalArgs,
    report: &R,
    text: impl FnOnce(&mut StdoutLock<'static>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if global.output == OutputFormat::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
        return Ok(());
    }
    text(&mut out)
}

/// `Err` ([`crate::exit::Failure::HostsFailed`], its exit code) when `failed` of `total` hosts
/// failed.
pub fn hosts_failed(failed: usize, total: usize) -> anyhow::Result<()> {
    if failed > 0 {
        return Err(crate::exit::Failure::HostsFailed { failed, total }.into());
    }
    Ok(())
}
