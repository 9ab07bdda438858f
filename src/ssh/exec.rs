//! Remote command requests and results: `sh -c` quoting, sudo wrapping (password on stdin only),
//! and the output streams.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::SudoMode;
pub use crate::shell::shell_quote;

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
    /// Keep at most this many bytes of each output stream (default [`MAX_OUTPUT_BYTES`]); the
    /// rest is read and dropped, and the output is marked truncated.
    pub max_output: Option<usize>,
}

/// What one command may leave in memory per output stream unless its request says otherwise:
/// a host (or whatever runs on it) cannot make edgeops hold more than this per command, however
/// much it prints. Enough for the largest answer edgeops reads (a 500-node `kubectl get nodes`).
pub const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

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

    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = Some(bytes);
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
    /// The command printed more than its request's `max_output` on a stream: only the first
    /// bytes were kept.
    pub truncated: bool,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit.success()
    }

    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Append `data` to `stream`'s buffer, up to `limit` bytes in all; the rest is dropped
    /// and the output marked truncated.
    pub(crate) fn keep(&mut self, stream: Stream, data: &[u8], limit: usize) {
        let buffer = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        let room = limit.saturating_sub(buffer.len());
        if data.len() > room {
            self.truncated = true;
        }
        buffer.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// The command line sent to sshd, and the stdin prefix it needs (the sudo password).
///
/// sshd hands the line to the login shell; `exec sh -c` gives every host the same POSIX shell
/// whatever the login shell is, and `tag` (the `$0` of that shell) lets `kill_command` find the
/// process later.
///
/// With a sudo password the password never shares a stream with the command's data: a small
/// wrapper (run as the login user) reads the first line of stdin (the password) itself, keeps
/// the rest of stdin on fd 3, and pipes the password alone to `sudo -S`. Whether sudo prompts or
/// not (NOPASSWD, a cached credential) the password goes nowhere else, and a refused password
/// makes sudo read EOF instead of the command's data as its next guess. The root command takes
/// its stdin back from the wrapper's fd 3 through `/proc` (sudo closes every descriptor above
/// 2, so fd 3 itself does not survive). `-p ''` keeps the prompt off stderr.
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
            let line = format!(
                "exec sh -c {} edgeops-sudo {} {tag}",
                shell_quote(&PASSWORD_WRAPPER),
                shell_quote(command)
            );
            (line, Some(prefix))
        }
    }
}

/// The login-user side of a sudo-with-password command (`$1`: the command, `$2`: its tag).
static PASSWORD_WRAPPER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::shell::without_comments(include_str!("sh/sudo-password.sh"))
});

/// The script that proves, once per session and before any other privileged command, that
/// sudo works with the configured password, and tells whether it prompts at all (`$1`: the
/// prompt marker). Its stdin holds the password and nothing else; `-v` only validates. sudo
/// reads the password from a FIFO that is kept open but gets nothing more, and the script
/// watches sudo's prompts: a second prompt means the password was refused, and sudo is killed
/// while it waits for another guess, so PAM sees exactly one attempt (an EOF answer would count
/// as a second failure for pam_faillock).
pub(crate) fn sudo_probe_script() -> String {
    crate::shell::without_comments(include_str!("sh/sudo-probe.sh"))
}

/// What the probe prints when sudo needs no password.
pub(crate) const PROBE_NOPASSWD: &str = "edgeops-sudo=nopasswd";
/// What the probe prints before `sudo -v`'s exit status.
pub(crate) const PROBE_STATUS: &str = "edgeops-sudo-status=";

/// A script that stops the command started with `tag` (TERM, then KILL after a grace period):
/// its process group, and every descendant (found before signalling, so grandchildren that left
/// the group or lost their parent are stopped too). Needed because OpenSSH ignores `signal`
/// channel requests for root logins, and closing a channel does not stop a command that ignores
/// its pipes. Under sudo the command shares the group of the sudo process (and, with a password,
/// of the wrapper), so the group kill stops those as well. `kill -s SIG PID... -PGID...`: dash's
/// `kill` refuses `--` and reads a leading `-43` as an option, so a positive pid comes first.
pub(crate) fn kill_command(tag: &str) -> String {
    // `[e]` keeps this script's own command line from matching the pattern. The whole tree under
    // the tagged shell is collected before any signal: an installer's own children (its
    // downloads, its `sleep`s) would otherwise be orphaned by the first TERM and survive.
    let pattern = format!("[{}]{}", &tag[..1], &tag[1..]);
    crate::shell::with_vars(&[("pattern", &pattern)], include_str!("sh/kill.sh"))
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
    fn password_goes_to_stdin_never_to_the_command_line() {
        let mode = SudoMode::Password(SecretString::from("s3cr3t"));
        let (line, stdin) = wire_command("id -u", Some(&mode), "edgeops-run-1");
        assert!(line.starts_with("exec sh -c 'IFS= read -r p"), "{line}");
        assert!(
            line.ends_with(" edgeops-sudo 'id -u' edgeops-run-1"),
            "{line}"
        );
        // sudo's stdin is a pipe holding only the password; the command's stdin comes back
        // from the wrapper's fd 3, never through sudo.
        assert!(line.contains("\"$p\" | sudo -S -p "), "{line}");
        assert!(line.contains("/fd/3"), "{line}");
        assert!(!line.contains("s3cr3t"));
        assert_eq!(stdin.unwrap(), b"s3cr3t\n");
    }

    #[test]
    fn kill_script_stops_the_whole_tree_of_the_tagged_command() {
        use std::os::unix::process::CommandExt;
        let tag = unique_tag();
        // A shell tagged like a remote command, whose grandchild is a `sleep` no other process
        // on this machine runs.
        let sleep = format!("sleep 30.{}", std::process::id());
        // In its own process group, as sshd starts every remote command in its own session:
        // the script also signals the tagged command's group, which must not be this test's.
        let mut tagged = std::process::Command::new("sh")
            .args(["-c", &format!("sh -c '{sleep}; :' & wait"), &tag])
            .process_group(0)
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
    fn the_sudo_probe_sends_nothing_but_the_password_to_sudo() {
        let script = sudo_probe_script();
        assert!(script.starts_with("if sudo -n true"), "{script}");
        assert!(
            script.contains("sudo -S -p \"$1\" -v <\"$d/pw\""),
            "{script}"
        );
        // A second prompt (the password was refused) is never answered.
        assert!(script.contains("kill -KILL"), "{script}");
        // The markers the session parses are the ones the script prints.
        assert!(
            script.contains(&format!("echo {PROBE_NOPASSWD};")),
            "{script}"
        );
        assert!(
            script.contains(&format!("echo \"{PROBE_STATUS}$rc\"")),
            "{script}"
        );
    }

    #[test]
    fn output_beyond_the_limit_is_dropped_and_marked() {
        let mut out = ExecOutput {
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit: Exit::Unknown,
            truncated: false,
        };
        out.keep(Stream::Stdout, b"12345", 8);
        assert!(!out.truncated);
        out.keep(Stream::Stdout, b"6789", 8);
        out.keep(Stream::Stdout, b"more", 8);
        out.keep(Stream::Stderr, b"err", 8);
        assert_eq!(out.stdout, b"12345678");
        assert_eq!(out.stderr, b"err");
        assert!(out.truncated);
    }

    #[test]
    fn kill_script_never_matches_itself() {
        let script = kill_command("edgeops-run-7-ab-1");
        assert!(!script.contains("edgeops-run-7-ab-1"));
        assert!(script.contains("'[e]dgeops-run-7-ab-1'"));
        // dash (Debian's sh) rejects `kill --`: the old script never killed a group.
        assert!(!script.contains("kill -$sig --"), "{script}");
        assert!(script.contains("kill -s $sig $all $groups"), "{script}");
    }

    #[test]
    fn passwordless_sudo_never_prompts() {
        let (line, stdin) = wire_command("true", Some(&SudoMode::Passwordless), "edgeops-run-1");
        assert_eq!(line, "exec sudo -n -- sh -c true edgeops-run-1");
        assert!(stdin.is_none());
    }
}
