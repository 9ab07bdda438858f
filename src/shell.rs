//! POSIX shell text: the one quoting helper every script and command line uses, and the
//! assembly of a remote script from its `*.sh` file and the values it is given.

/// Quote `text` as one POSIX shell word: plain words stay as they are (readable logs), anything
/// else is single-quoted with `'` written as `'\''`.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// A script made of `name=value` lines (each value quoted) followed by `body` (a `*.sh` file
/// loaded with `include_str!`). Values reach the script as shell variables, never as text
/// spliced into its code, so the file stays one static, shellcheck-checked script.
pub fn with_vars(vars: &[(&str, &str)], body: &str) -> String {
    let mut script = String::new();
    for (name, value) in vars {
        debug_assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "not a shell variable name: {name}"
        );
        script.push_str(name);
        script.push('=');
        script.push_str(&shell_quote(value));
        script.push('\n');
    }
    script.push_str(body);
    script
}

/// `script` without its full-line comments: for scripts sent with every command, where the
/// comments (kept in the `.sh` file for readers and shellcheck) would only cost bytes on the wire.
pub fn without_comments(script: &str) -> String {
    script
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// Run `script` with the local `sh`, `stdin` on its standard input: how the unit tests run the
/// scripts edgeops sends to hosts for real, on a private path instead of the host's.
#[cfg(test)]
pub fn run_locally(script: &str, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    // A script that exits before reading its stdin closes the pipe: that is not a failure.
    let _ = child.stdin.take().expect("piped").write_all(stdin);
    child.wait_with_output().expect("sh ends")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sh` makes of `words`, one argument per line (`printf '%s\n'`).
    fn sh_words(words: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {words}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{words}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn plain_words_stay_plain_and_the_rest_is_single_quoted() {
        assert_eq!(shell_quote("uname"), "uname");
        assert_eq!(shell_quote("v1.31.4+k3s1"), "v1.31.4+k3s1");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn every_quoted_text_comes_back_from_a_real_sh_as_one_unchanged_word() {
        let texts = [
            "plain",
            "",
            "a b",
            "it's",
            "''",
            "\\'\\",
            "$(touch /tmp/edgeops-quote-pwned) `id` $HOME ${x:-y}",
            "tab\there; semi & amp | pipe > out < in",
            "* ? [a-z] ~ # ! %",
            "line one\nline two\n",
            "unicode: é ü ✓",
            "-n",
        ];
        for text in texts {
            assert_eq!(
                sh_words(&shell_quote(text)),
                format!("{text}\n"),
                "{text:?}"
            );
        }
        assert!(!std::path::Path::new("/tmp/edgeops-quote-pwned").exists());
    }

    #[test]
    fn variables_reach_the_script_body_unchanged() {
        let script = with_vars(
            &[("a", "x'y z"), ("b", "$(false)")],
            "printf '%s|%s\\n' \"$a\" \"$b\"\n",
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "x'y z|$(false)\n");
    }
}
