//! Diagnostic logging to stderr via tracing; the level follows -v / -q and `EDGEOPS_LOG`.

use tracing_subscriber::EnvFilter;

/// Install the stderr logger once. Secrets never reach it: callers log redacted values only.
/// `-v` shows each remote command per host (`host: $ command`, then how it ended), `-vv` adds
/// edgeops's debug lines and the SSH protocol (russh's key exchange, auth and channel events).
/// Colour only when stderr is a terminal and `NO_COLOR` is unset (https://no-color.org).
pub fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "edgeops=info,warn",
        (false, 2) => "edgeops=debug,russh=debug,info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("EDGEOPS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_on_stderr())
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Whether stderr may carry colour: a terminal, and `NO_COLOR` unset or empty.
pub fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}
