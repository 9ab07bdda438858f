//! How a host (or the GitLab phase) ended a run: the one status every report uses, how a host's
//! part ended ([`HostEnd`]) and the columns every report's host row shares ([`HostLine`]). Its own
//! module so the commands' reports can share them without importing each other.

use serde::Serialize;

use crate::engine::{Engine, Failure, FailureKind, HostId};
use crate::inventory::Role;

/// How a host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Something was changed and the node is as wanted.
    Done,
    /// Already as wanted: nothing was changed.
    Unchanged,
    /// Work failed or the host was refused; `reason` says why.
    Failed,
    /// Not attempted because something it depends on failed; `reason` says what.
    Skipped,
    /// `plan` / `--dry-run`: `decision` says what `up` would do.
    Planned,
}

/// How one host's part of a run ended: its status, the word for the RESULT column, and why it
/// failed or was skipped.
#[derive(Debug, Clone)]
pub struct HostEnd {
    pub status: Status,
    pub result: String,
    pub failure: Option<Failure>,
}

impl HostEnd {
    pub fn new(status: Status, result: impl Into<String>) -> HostEnd {
        HostEnd {
            status,
            result: result.into(),
            failure: None,
        }
    }

    /// Failed (`failed`), or skipped (`skipped`) when the failure is of kind skipped.
    pub fn failed(failure: Failure) -> HostEnd {
        let (status, result) = if failure.kind == FailureKind::Skipped {
            (Status::Skipped, "skipped")
        } else {
            (Status::Failed, "failed")
        };
        HostEnd {
            status,
            result: result.to_owned(),
            failure: Some(failure),
        }
    }

    pub fn is_failed(&self) -> bool {
        matches!(self.status, Status::Failed | Status::Skipped)
    }
}

/// The columns every report's host row shares; each command's row flattens it into its own
/// (`--output json` keeps one shape a script can branch on, whatever the command).
#[derive(Debug, Clone, Serialize)]
pub struct HostLine {
    pub host: String,
    pub role: &'static str,
    pub status: Status,
    /// What was done (`installed`, `reset`, `upgraded`, `restored`, `failed`, `skipped`, ...).
    pub result: String,
    /// On a failed or skipped host: unreachable, timed_out, exited, refused, cancelled, skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
    /// The exit code, when a command exited non-zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    pub reason: Option<String>,
    /// Time spent on this host's work.
    pub seconds: f64,
    /// Remote commands run on the host (each one SSH round trip plus its own work).
    pub commands: u32,
    /// This host's log file in the run folder.
    pub log: Option<String>,
}

impl HostLine {
    /// `id`'s row: how it ended, and what its remote work cost as the engine counted it.
    pub fn new(engine: &Engine, id: HostId, role: Role, end: &HostEnd) -> HostLine {
        let busy = engine.busy(id);
        let failure = end.failure.as_ref().filter(|_| end.is_failed());
        HostLine {
            host: engine.name(id).to_owned(),
            role: role.as_str(),
            status: end.status,
            result: end.result.clone(),
            failure: failure.map(|f| f.kind),
            exit_code: failure.and_then(|f| f.exit_code),
            reason: end.failure.as_ref().map(|f| f.reason.clone()),
            seconds: busy.time.as_secs_f64(),
            commands: busy.commands,
            log: engine
                .log()
                .host_file(engine.name(id))
                .map(|p| p.display().to_string()),
        }
    }

    /// The same row with the wall time of the host's part instead of its commands' time.
    pub fn took(mut self, took: std::time::Duration) -> HostLine {
        self.seconds = took.as_secs_f64();
        self
    }

    pub fn is_failure(&self) -> bool {
        matches!(self.status, Status::Failed | Status::Skipped)
    }

    /// The RESULT column: the result, and for a failure its kind (`failed (timed out)`,
    /// `failed (exit 3)`).
    pub fn result_text(&self) -> String {
        match (self.failure, self.exit_code) {
            (Some(FailureKind::Exited), Some(code)) => format!("{} (exit {code})", self.result),
            (Some(kind), _) if kind.as_str() != self.result => {
                format!("{} ({})", self.result, kind.as_str())
            }
            _ => self.result.clone(),
        }
    }
}

/// A command's report row reads as its shared columns (`row.host`, `row.result_text()`): it
/// derefs to its `line` field.
macro_rules! host_row {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = $crate::phases::host_status::HostLine;

            fn deref(&self) -> &Self::Target {
                &self.line
            }
        }
    };
}
pub(crate) use host_row;
