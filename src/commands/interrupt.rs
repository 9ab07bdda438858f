//! Termination signals as one interrupt: SIGINT (Ctrl-C), SIGTERM (a cancelled CI job, `timeout`,
//! systemd) and SIGHUP (a closed terminal) all do what Ctrl-C does. The first cancels the run:
//! remote commands are stopped, the cluster lock is released (bounded by its own timeout) and the
//! partial results are reported, exit 1. A second signal ends the process at once, exit 128 + the
//! signal's number (130, 143, 129), leaving the lock to `edgeops unlock` or its expiry.

use std::future::Future;
use std::io::Write;

use tokio::signal::unix::{SignalKind, signal};

use crate::ssh::Cancel;

/// One of the signals edgeops treats as an interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Int,
    Term,
    Hup,
}

impl Interrupt {
    pub fn name(self) -> &'static str {
        match self {
            Interrupt::Int => "SIGINT",
            Interrupt::Term => "SIGTERM",
            Interrupt::Hup => "SIGHUP",
        }
    }

    /// The exit code of a process ended by a second signal: 128 + the signal's number.
    pub fn exit_code(self) -> i32 {
        128 + match self {
            Interrupt::Int => libc::SIGINT,
            Interrupt::Term => libc::SIGTERM,
            Interrupt::Hup => libc::SIGHUP,
        }
    }
}

/// The three signals, listened to together. Once created (inside a tokio runtime), they no
/// longer end the process by default: whoever holds them decides.
pub struct Interrupts {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub fn new() -> std::io::Result<Interrupts> {
        Ok(Interrupts {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next of the three signals to arrive.
    pub async fn next(&mut self) -> Interrupt {
        tokio::select! {
            _ = self.int.recv() => Interrupt::Int,
            _ = self.term.recv() => Interrupt::Term,
            _ = self.hup.recv() => Interrupt::Hup,
        }
    }
}

/// Watch for interrupts while `work` runs: the first cancels `cancel` (the run then stops its
/// remote commands, releases the lock and reports); a second exits at once.
pub async fn with_interrupt<T>(cancel: &Cancel, work: impl Future<Output = T>) -> T {
    let watch = spawn_watch(cancel.clone());
    let result = work.await;
    watch.abort();
    result
}

/// The watcher of [`with_interrupt`], for callers that stop watching themselves (`abort`).
pub fn spawn_watch(cancel: Cancel) -> tokio::task::JoinHandle<()> {
    spawn_watch_all(vec![cancel])
}

/// [`spawn_watch`] for several runs at once (a fleet run): the first signal cancels them all.
pub fn spawn_watch_all(cancels: Vec<Cancel>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut interrupts) = Interrupts::new() else {
            return;
        };
        let first = interrupts.next().await;
        // `writeln!`, not `eprintln!`: after SIGHUP the terminal may be gone, and a failed
        // write must not panic the watcher.
        let _ = writeln!(
            std::io::stderr(),
            "interrupted ({}): stopping remote commands and closing sessions; send it again to exit at once",
            first.name()
        );
        for cancel in &cancels {
            cancel.cancel();
        }
        let second = interrupts.next().await;
        let _ = writeln!(
            std::io::stderr(),
            "{} again: exiting now (exit {}); the cluster lock, if held, stays until `edgeops unlock` or its expiry",
            second.name(),
            second.exit_code()
        );
        std::process::exit(second.exit_code());
    })
}
