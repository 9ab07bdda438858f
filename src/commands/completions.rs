//! `edgeops completions SHELL`: shell completion scripts generated from the clap tree.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "edgeops", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
