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
