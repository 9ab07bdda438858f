//! `backup`'s remote half, on the run engine with the first server as its only host: take a
//! snapshot with k3s's own `etcd-snapshot save`, copy it to the workstation (0600, sha256 in the
//! backup folder's manifest), prune old ones there and here; or list the server's snapshots.
//! Each a small phase ([`SAVE`], [`LIST`]); every remote step has a named limit. The scripts,
//! the reading of what they print and the workstation side (names, manifest) are
//! `k3s::snapshot`.
//!
//! - `steps`: the phases; `run`: the [`Backup`] handle the CLI drives and its outcome.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::{HostId, Manager, Step};
use crate::k3s::snapshot::{Entry, Listed};
use crate::phases::run_core::RunCore;

mod run;
mod steps;

#[cfg(test)]
mod tests;

pub use run::{Backup, Outcome};

/// k3s writes the whole etcd database: on a slow SD card this takes a while.
pub const SAVE_TIMEOUT: Duration = Duration::from_secs(300);
/// Copying the snapshot file back over SSH.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(600);
/// `etcd-snapshot ls` and `prune`.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest snapshot edgeops copies (etcd's default quota is 2 GiB; edge clusters are far
/// smaller). A bigger one fails the backup instead of being cut short.
pub const MAX_SNAPSHOT_BYTES: usize = 2 * 1024 * 1024 * 1024;

/// What the CLI asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// List the server's snapshots.
    List,
    /// Take one named `name-<node>-<time>`, copy it into the destination; then keep only the
    /// newest `prune` of that name here and on the server, when given.
    Save { name: String, prune: Option<usize> },
}

/// The outcome of one backup on the workstation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Saved {
    pub entry: Entry,
    /// Where the copy lies on the workstation.
    pub local: String,
}

/// Everything one backup knows between its phases.
pub struct BackupRun {
    /// The engine (the first server alone) and the cluster; a backup takes no lock.
    pub core: RunCore,
    /// The backup folder on the workstation.
    pub dest: PathBuf,
    pub request: Request,
    /// The snapshot the save made, as k3s lists it.
    pub taken: Option<Listed>,
    /// What the phases did so far: the handle's answer.
    pub outcome: Outcome,
}

crate::phases::run_core::impl_run!(BackupRun);

impl BackupRun {
    fn saving(&self) -> bool {
        matches!(self.request, Request::Save { .. })
    }

    /// The first server when `wanted`: a phase's selection.
    fn first_if(&self, wanted: bool) -> Vec<HostId> {
        if wanted {
            vec![self.core.first]
        } else {
            Vec::new()
        }
    }
}

/// The phases of `request`, in order.
fn phases(request: &Request) -> Manager<'static, BackupRun> {
    match request {
        Request::List => Manager::new(false).then(Step::reads(
            "list",
            |cx| cx.first_if(!cx.saving()),
            steps::list_server,
        )),
        Request::Save { .. } => Manager::new(false)
            .then(Step::writes(
                "save",
                |cx| cx.first_if(cx.saving()),
                steps::save,
            ))
            .then(Step::writes(
                "fetch",
                |cx| cx.first_if(cx.taken.is_some()),
                steps::fetch,
            ))
            .then(Step::writes(
                "prune",
                |cx| {
                    cx.first_if(
                        cx.outcome.saved.is_some()
                            && matches!(cx.request, Request::Save { prune: Some(_), .. }),
                    )
                },
                steps::prune,
            )),
    }
}

/// The phase titles in order, for docs and tests.
pub const SAVE: [&str; 3] = ["save", "fetch", "prune"];
pub const LIST: [&str; 1] = ["list"];
