//! Diagnostic logging to stderr via tracing; the level follows -v / -q and `EDGEOPS_LOG`.

use tracing_subscriber::EnvFilter;

/// Install the stderr logger once. Secrets never reach it: callers log redacted values only.
pub fn init(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "edgeops=info,warn",
        (false, 2) => "edgeops=debug,info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("EDGEOPS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}
