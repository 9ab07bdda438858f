//! The one way a command's final report goes out on stdout: the report as JSON with `--output
//! json`, else the command's own text (a table and notes).

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
