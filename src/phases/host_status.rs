//! How a host (or the GitLab phase) ended a run: the one status every report of `up`, `plan`,
//! `status`, `reset` and `upgrade` uses. Its own module so reports can share it without
//! importing each other.

use serde::Serialize;

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
