//! The one yes/no question edgeops asks before it changes something it cannot undo: the
//! question on stderr, the answer from stdin; anything but `y`/`yes` is no.

use std::io::{BufRead, Write};

/// Ask `question` (it should end with `[y/N] `) and read the answer.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    {
        let mut err = std::io::stderr().lock();
        write!(err, "{question}")?;
        err.flush()?;
    }
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(is_yes(&answer))
}

/// [`confirm`] while a run holds hosts (its lock, its sessions): the read races every
/// termination signal, and a signal or end of input is a no. The runtime's signal handlers are
/// installed by then, so the read must race them, not block them (without a listener, SIGTERM
/// would kill the process before the caller gives its lock back).
pub fn confirm_or_interrupted(
    runtime: &tokio::runtime::Runtime,
    question: &str,
) -> anyhow::Result<bool> {
    {
        let mut err = std::io::stderr().lock();
        write!(err, "{question}")?;
        err.flush()?;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A plain thread: left blocked on stdin after Ctrl-C, it does not hold up the exit.
    std::thread::spawn(move || {
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        let _ = tx.send(answer);
    });
    let answer = runtime.block_on(async {
        tokio::select! {
            answer = rx => answer.ok(),
            _ = interrupted() => None,
        }
    });
    if answer.is_none() {
        eprintln!();
    }
    Ok(answer.is_some_and(|a| is_yes(&a)))
}

/// Resolves at the first termination signal (never, when signals cannot be watched).
async fn interrupted() {
    match super::interrupt::Interrupts::new() {
        Ok(mut interrupts) => {
            interrupts.next().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Whether a typed answer means yes.
pub fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_y_or_yes_is_yes() {
        for yes in ["y", "Y", "yes", " YES\n"] {
            assert!(super::is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yess", "ye"] {
            assert!(!super::is_yes(no), "{no:?}");
        }
    }
}
