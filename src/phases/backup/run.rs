//! The [`Backup`] handle the CLI drives: connect to the first server, run the phases of the
//! request, close the session, and say what came of it ([`Outcome`]).

use std::path::PathBuf;

use crate::engine::{Engine, Failure};
use crate::inventory::Inventory;
use crate::k3s::snapshot::Listed;
use crate::phases::run_core::{RunCore, run_phases};

use super::{BackupRun, Request, Saved, phases};

/// What one backup did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub saved: Option<Saved>,
    pub listed: Option<Vec<Listed>>,
    pub pruned_local: Vec<String>,
    pub pruned_server: Vec<String>,
    /// Why the first server's step failed (unreachable, timed out, exited, refused).
    pub failure: Option<Failure>,
}

pub struct Backup;

impl Backup {
    /// Do `request` over any engine holding the first server (a scripted one in unit tests).
    /// `Err`: a local step failed (the backup folder or its manifest).
    pub async fn run(
        engine: Engine,
        inventory: &Inventory,
        dest: PathBuf,
        request: Request,
    ) -> anyhow::Result<Outcome> {
        let core = RunCore::new(engine, inventory, "edgeops backup")?;
        let mut run = BackupRun {
            outcome: Outcome {
                failure: core.engine.unreachable(core.first).cloned(),
                ..Outcome::default()
            },
            core,
            dest,
            request,
            taken: None,
        };
        let result = if run.outcome.failure.is_some() {
            Ok(())
        } else {
            let phases = phases(&run.request);
            run_phases(&mut run, &phases).await
        };
        run.core.finish().await;
        result?;
        Ok(run.outcome)
    }
}
