//! Text that came from a host or a file, made safe to print on a terminal: control characters
//! (ANSI escapes, carriage returns, backspaces, bells, C1 codes) are dropped so that nothing a
//! host or a file holds can move the cursor, rewrite earlier lines or change the terminal.

use std::borrow::Cow;

/// One line: every control character is dropped, tabs become a space.
pub fn clean_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .filter_map(|c| match c {
                '\t' => Some(' '),
                c if c.is_control() => None,
                c => Some(c),
            })
            .collect(),
    )
}

/// Several lines: newlines and tabs stay, every other control character is dropped.
pub fn clean_text(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().filter(|c| !unsafe_char(*c)).collect())
}

/// Bytes from a host (possibly not UTF-8), as safe multi-line text.
pub fn clean_bytes(bytes: &[u8]) -> String {
    clean_text(&String::from_utf8_lossy(bytes)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_carriage_returns_are_dropped() {
        let hostile = "root\u{1b}[2J\u{1b}]0;pwned\u{7}\rfake\u{9b}31m line";
        assert_eq!(clean_line(hostile), "root[2J]0;pwnedfake31m line");
        assert_eq!(clean_text("a\tb\nc\u{1b}[1A"), "a\tb\nc[1A");
        assert!(matches!(clean_line("plain"), Cow::Borrowed("plain")));
    }
}
