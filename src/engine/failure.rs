//! Why a host's step failed, as a kind a script can branch on (`--output json`) and a reason a
//! person reads: unreachable, timed out, exited N, refused, cancelled, skipped.

use std::time::Duration;

use serde::Serialize;

use crate::fleet::HostError;
use crate::ssh::{ExecOutput, Exit, SshError};

use super::runlog::Redactor;

/// The kind of a failure, stable for scripts (`"kind": "timed_out"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The host could not be reached (connect failed, or the connection was lost).
    Unreachable,
    /// A command or step ran past its limit; what edgeops started was stopped.
    TimedOut,
    /// A command ran to its end and exited non-zero (or was killed by a signal).
    Exited,
    /// edgeops (or k3s, or sudo) refused: a check failed before anything was changed.
    Refused,
    /// The run was interrupted (Ctrl-C, SIGTERM, SIGHUP).
    Cancelled,
    /// Not attempted because something it depends on failed.
    Skipped,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::TimedOut => "timed out",
            FailureKind::Exited => "exited",
            FailureKind::Refused => "refused",
            FailureKind::Cancelled => "cancelled",
            FailureKind::Skipped => "skipped",
        }
    }
}

/// One failure: its kind, the exit code when a command exited, and the reason (redacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub fn new(kind: FailureKind, reason: impl Into<String>) -> Failure {
        Failure {
            kind,
            exit_code: None,
            reason: reason.into(),
        }
    }

    pub fn refused(reason: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Refused, reason)
    }

    pub fn skipped(reason: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Skipped, reason)
    }

    pub fn timed_out(title: &str, after: Duration) -> Failure {
        Failure::new(
            FailureKind::TimedOut,
            format!(
                "{title}: timed out after {}",
                humantime::format_duration(after)
            ),
        )
    }

    /// What an SSH error means for the step `title` (the reason redacted).
    pub fn from_ssh(title: &str, error: &SshError, redactor: &Redactor) -> Failure {
        let kind = match error {
            SshError::CommandTimeout { .. } => FailureKind::TimedOut,
            SshError::Cancelled { .. } => FailureKind::Cancelled,
            SshError::SudoRefused { .. }
            | SshError::HostKeyUnknown(_)
            | SshError::HostKeyChanged(_)
            | SshError::HostKeyRevoked { .. }
            | SshError::HostCertificate { .. }
            | SshError::Auth { .. } => FailureKind::Refused,
            SshError::Upload { status, .. } => {
                return Failure {
                    kind: FailureKind::Exited,
                    exit_code: Some(*status),
                    reason: redactor.redact(&format!("{title}: {error}")),
                };
            }
            SshError::Exec { .. } | SshError::LocalFile { .. } => FailureKind::Exited,
            _ => FailureKind::Unreachable,
        };
        Failure::new(kind, redactor.redact(&format!("{title}: {error}")))
    }

    /// What a fleet step's error means (the reason redacted; `title` prefixes step failures).
    pub fn from_host_error(title: &str, error: &HostError, redactor: &Redactor) -> Failure {
        match error {
            HostError::Unreachable(e) => Failure::new(
                FailureKind::Unreachable,
                redactor.redact(&format!("unreachable: {e}")),
            ),
            HostError::Ssh(e) => Failure::from_ssh(title, e, redactor),
            HostError::Step(e) => match e.downcast_ref::<Failure>() {
                Some(failure) => failure.clone(),
                None => Failure::new(
                    FailureKind::Exited,
                    redactor.redact(&format!("{title}: {e:#}")),
                ),
            },
            HostError::Timeout(after) => Failure::timed_out(title, *after),
            HostError::Cancelled => {
                Failure::new(FailureKind::Cancelled, format!("{title}: cancelled"))
            }
        }
    }

    /// A command that ran to its end and exited non-zero: the last lines of its stderr (or of
    /// both streams when stderr is empty), redacted. `secret_output`: stdout holds secrets and
    /// never reaches a reason.
    pub fn exited(
        title: &str,
        out: &ExecOutput,
        secret_output: bool,
        redactor: &Redactor,
    ) -> Failure {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail = if secret_output || !stderr.trim().is_empty() {
            last_lines(&stderr, 3)
        } else {
            last_lines(
                &format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr),
                3,
            )
        };
        let code = match &out.exit {
            Exit::Status(code) => Some(*code),
            Exit::Signal { .. } | Exit::Unknown => None,
        };
        Failure {
            kind: FailureKind::Exited,
            exit_code: code,
            reason: redactor.redact(&format!("{title} failed ({}): {tail}", out.exit)),
        }
    }
}

/// The last `n` non-empty lines of a command's output, on one line: the reason a report shows.
pub fn last_lines(text: &str, n: usize) -> String {
    // Host output: only text reaches the report (no escapes, no carriage returns).
    let lines: Vec<String> = text
        .lines()
        .map(|l| crate::sanitize::clean_line(l).into_owned())
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
