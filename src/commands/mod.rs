//! Wiring from a parsed command line to the code that does the work, and from its outcome to an exit code.

pub mod backup;
pub mod bootstrap;
pub mod bundle;
pub mod check;
pub mod ci;
pub mod completions;
pub mod exec;
pub mod fleet;
pub mod hostkeys;
pub mod interrupt;
pub mod kubeconfig;
pub mod plan;
pub mod prompt;
pub mod reach;
pub mod render;
pub mod replace;
pub mod report_out;
pub mod reset;
pub mod restore;
pub mod run_setup;
pub mod run_tables;
pub mod status;
pub mod unlock;
pub mod up;
pub mod upgrade;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::exit::exit_code_for;

/// The live progress of a run (`up`, `plan`, `status`, `reset`, `upgrade`): nothing with
/// `--quiet` or JSON, bars on a terminal (without `-v`), else a line per phase and host result.
pub fn run_progress(
    global: &crate::cli::GlobalArgs,
) -> std::sync::Arc<crate::report::ProgressView> {
    use std::io::IsTerminal;
    let show = if global.quiet || global.output == crate::cli::OutputFormat::Json {
        crate::report::Show::Nothing
    } else if std::io::stderr().is_terminal() && global.verbose == 0 {
        crate::report::Show::Bars
    } else {
        crate::report::Show::Lines
    };
    std::sync::Arc::new(crate::report::ProgressView::new(show))
}

/// What a one-shot command over the fleet (`exec`, `bootstrap`) shows while it works: bars on a
/// terminal, nothing otherwise (its own output is the result).
pub fn fan_out_progress(global: &crate::cli::GlobalArgs) -> crate::report::Show {
    match global.draws_progress() {
        true => crate::report::Show::Bars,
        false => crate::report::Show::Nothing,
    }
}

/// Run one command to completion and turn its result into the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    crate::logging::init(cli.global.verbose, cli.global.quiet);
    reach::set_config_file(cli.global.ssh_config.clone());
    let result = dispatch(cli);
    match result {
        Ok(code) => code,
        // A reader that stopped early (`edgeops check -o json | head -1`) is not an error of
        // ours: stop quietly, as `cat` or `grep` would.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // Errors quote hosts and files (lock holders, remote output, inventory values):
            // shown as text, never obeyed by the terminal.
            eprintln!(
                "error: {}",
                crate::sanitize::clean_text(&format!("{err:#}"))
            );
            exit_code_for(&err)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    match cli.command {
        // Several inventories, a folder or a pattern: a fleet run over every cluster.
        Command::Check(args) if fleet::is_fleet(&args.inventory, &args.more) => {
            fleet::check(&global, &args)
        }
        Command::Up(args) if fleet::is_fleet(&args.inventory, &args.more) => {
            fleet::up(&global, &args)
        }
        Command::Plan(args) if fleet::is_fleet(&args.inventory, &args.more) => {
            fleet::plan(&global, &args)
        }
        Command::Status(args) if fleet::is_fleet(&args.inventory, &args.more) => {
            fleet::status(&global, &args)
        }
        Command::Upgrade(args) if fleet::is_fleet(&args.inventory, &args.more) => {
            fleet::upgrade(&global, &args)
        }
        Command::Check(args) => check::run(&global, &args),
        Command::Ci(args) => ci::run(&args),
        Command::Completions(args) => completions::run(&args),
        Command::Up(args) => up::run(&global, &args),
        Command::Plan(args) => plan::run(&global, &args),
        Command::Status(args) => status::run(&global, &args),
        Command::Reset(args) => reset::run(&global, &args),
        Command::Backup(args) => backup::run(&global, &args),
        Command::Restore(args) => restore::run(&global, &args),
        Command::Replace(args) => replace::run(&global, &args),
        Command::Upgrade(args) => upgrade::run(&global, &args),
        Command::Exec(args) => exec::run(&global, &args),
        Command::Kubeconfig(args) => kubeconfig::run(&global, &args),
        Command::Render(args) => render::run(&global, &args),
        Command::Unlock(args) => unlock::run(&global, &args),
        Command::Hostkeys(args) => hostkeys::run(&global, &args),
        Command::Bootstrap(args) => bootstrap::run(&global, &args),
        Command::Bundle(args) => bundle::run(&global, &args),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A multi-threaded runtime for the commands that talk to hosts.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
