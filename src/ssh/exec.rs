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
    /// Run even after the run was cancelled (Ctrl-C): for the short clean-up a cancelled run
    /// still owes the host, such as releasing its lock. Its timeout still applies.
    pub ignore_cancel: bool,
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

    pub fn ignore_cancel(mut self, ignore: bool) -> Self {
        self.ignore_cancel = ignore;
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
/// sshd hands the line to the login shell; `exec sh -c` gives every host the same POSIX shell
/// whatever the login shell is, and `tag` (the `$0` of that shell) lets `kill_command` find the
/// process later. With a sudo password, `-k` makes sudo always read it (a cached credential would
/// otherwise leave the password in the command's stdin) and `-p ''` keeps the prompt off stderr.
pub(crate) fn wire_command(
    command: &str,
    sudo: Option<&SudoMode>,
    tag: &str,
) -> (String, Option<Vec<u8>>) {
    let inner = format!("sh -c {} {tag}", shell_quote(command));
    match sudo {
        None | Some(SudoMode::None) => (format!("exec {inner}"), None),
        Some(SudoMode::Passwordless) => (format!("exec sudo -n -- {inner}"), None),
        Some(SudoMode::Password(password)) => {
            let mut prefix = password.expose_secret().as_bytes().to_vec();
            prefix.push(b'\n');
            (format!("exec sudo -k -S -p '' -- {inner}"), Some(prefix))
        }
    }
}

/// A script that stops the command started with `tag` (TERM, then KILL after a grace period):
/// its process group and its direct children. Needed because OpenSSH ignores `signal` channel
/// requests for root logins, and closing a channel does not stop a command that ignores its pipes.
pub(crate) fn kill_command(tag: &str) -> String {
    // `[e]` keeps this script's own command line from matching the pattern. The whole tree under
    // the tagged shell is collected before any signal: an installer's own children (its
    // downloads, its `sleep`s) would otherwise be orphaned by the first TERM and survive.
    let pattern = format!("[{}]{}", &tag[..1], &tag[1..]);
    format!(
        "tree() {{ echo \"$1\"; for c in $(pgrep -P \"$1\"); do tree \"$c\"; done; }}; \
         pids=; for p in $(pgrep -f -- '{pattern}'); do pids=\"$pids $(tree \"$p\")\"; done; \
         if [ -n \"$pids\" ]; then \
           kill -TERM $pids 2>/dev/null; sleep 0.3; kill -KILL $pids 2>/dev/null; \
         fi; true"
    )
}

/// A tag no other command of this or a concurrent run carries.
pub(crate) fn unique_tag() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("edgeops-run-{}-{nanos:x}-{n}", std::process::id())
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
        let (line, stdin) = wire_command("id -u", Some(&mode), "edgeops-run-1");
        assert_eq!(line, "exec sudo -k -S -p '' -- sh -c 'id -u' edgeops-run-1");
        assert!(!line.contains("s3cr3t"));
        assert_eq!(stdin.unwrap(), b"s3cr3t\n");
    }

    #[test]
    fn kill_script_stops_the_whole_tree_of_the_tagged_command() {
        let tag = unique_tag();
        // A shell tagged like a remote command, whose grandchild is a `sleep` no other process
        // on this machine runs.
        let sleep = format!("sleep 30.{}", std::process::id());
        let mut tagged = std::process::Command::new("sh")
            .args(["-c", &format!("sh -c '{sleep}; :' & wait"), &tag])
            .spawn()
            .unwrap();
        let grandchild_running = || {
            std::process::Command::new("pgrep")
                .args(["-fx", &sleep])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
                .unwrap_or(0)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let before = loop {
            let n = grandchild_running();
            if n > 0 || std::time::Instant::now() > deadline {
                break n;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(before > 0, "the test's sleep never started");
        let killed = std::process::Command::new("sh")
            .args(["-c", &kill_command(&tag)])
            .status()
            .unwrap();
        assert!(killed.success());
        let _ = tagged.wait();
        assert_eq!(grandchild_running(), 0, "the grandchild survived");
    }

    #[test]
    fn kill_script_never_matches_itself() {
        let script = kill_command("edgeops-run-7-ab-1");
        assert!(!script.contains("edgeops-run-7-ab-1"));
        assert!(script.contains("'[e]dgeops-run-7-ab-1'"));
    }

    #[test]
    fn passwordless_sudo_never_prompts() {
        let (line, stdin) = wire_command("true", Some(&SudoMode::Passwordless), "edgeops-run-1");
        assert_eq!(line, "exec sudo -n -- sh -c true edgeops-run-1");
        assert!(stdin.is_none());
    }
}
