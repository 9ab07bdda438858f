//! Remote command requests and results: `sh -c` quoting, sudo wrapping (password on stdin only),
//! and the output streams.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::SudoMode;

/// One command to run on a host.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// A shell command line, run by `sh -c` on the host.
    pub command: String,
    /// Run it through sudo as configured for the host.
    pub sudo: bool,
    /// Bytes written to the command's stdin, followed by EOF. Without it stdin is closed at once.
    pub stdin: Option<Vec<u8>>,
    /// Overrides the host's command timeout.
    pub timeout: Option<Duration>,
}

impl ExecRequest {
    pub fn new(command: impl Into<String>) -> Self {
        ExecRequest {
            command: command.into(),
            ..Default::default()
        }
    }

    pub fn sudo(mut self, sudo: bool) -> Self {
        self.sudo = sudo;
        self
    }

    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives output chunks as they arrive (for live, host-prefixed printing).
pub trait OutputSink: Send {
    fn output(&mut self, stream: Stream, data: &[u8]);
}

/// Collects nothing; used when only the collected `ExecOutput` matters.
impl OutputSink for () {
    fn output(&mut self, _: Stream, _: &[u8]) {}
}

/// How the remote command ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    Status(u32),
    Signal {
        name: String,
        core_dumped: bool,
        message: String,
    },
    /// The channel closed without an exit status (e.g. the server dropped it).
    Unknown,
}

impl Exit {
    pub fn success(&self) -> bool {
        *self == Exit::Status(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Status(code) => write!(f, "exit {code}"),
            Exit::Signal { name, .. } => write!(f, "killed by SIG{name}"),
            Exit::Unknown => f.write_str("no exit status"),
        }
    }
}

/// A finished command.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Exit,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit.success()
    }

    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Quote `s` as one POSIX shell word.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command line sent to sshd, and the stdin prefix it needs (the sudo password).
///
/// sshd hands the line to the login shell; wrapping the command in `sh -c` gives every host the
/// same POSIX shell whatever the login shell is. With a sudo password, `-k` makes sudo always read
/// it (a cached credential would otherwise leave the password in the command's stdin) and `-p ''`
/// keeps the prompt out of stderr.
pub(crate) fn wire_command(command: &str, sudo: Option<&SudoMode>) -> (String, Option<Vec<u8>>) {
    let inner = format!("sh -c {}", shell_quote(command));
    match sudo {
        None | Some(SudoMode::None) => (inner, None),
        Some(SudoMode::Passwordless) => (format!("sudo -n -- {inner}"), None),
        Some(SudoMode::Password(password)) => {
            let mut prefix = password.expose_secret().as_bytes().to_vec();
            prefix.push(b'\n');
            (format!("sudo -k -S -p '' -- {inner}"), Some(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn quoting_keeps_plain_words_and_escapes_quotes() {
        assert_eq!(shell_quote("uname"), "uname");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn password_goes_to_stdin_never_to_the_command_line() {
        let mode = SudoMode::Password(SecretString::from("s3cr3t"));
        let (line, stdin) = wire_command("id -u", Some(&mode));
        assert_eq!(line, "sudo -k -S -p '' -- sh -c 'id -u'");
        assert!(!line.contains("s3cr3t"));
        assert_eq!(stdin.unwrap(), b"s3cr3t\n");
    }

    #[test]
    fn passwordless_sudo_never_prompts() {
        let (line, stdin) = wire_command("true", Some(&SudoMode::Passwordless));
        assert_eq!(line, "sudo -n -- sh -c true");
        assert!(stdin.is_none());
    }
}
