//! The [`Backup`] handle the CLI drives: connect to the first server, run the phases of the
//! request, close the session, and say what came of it ([`Outcome`]).

use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::runlog::RunLog;
use crate::engine::{Engine, Failure, HostId};
use crate::fleet::{Fleet, FleetSettings};
use crate::inventory::Inventory;
use crate::k3s::snapshot::Listed;
use crate::phases::Quiet;
use crate::ssh::{ConnectOptions, SshContext};

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

fn host_name(cx: &BackupRun, id: HostId) -> String {
    cx.engine.name(id).to_owned()
}

impl Backup {
    /// Connect to the first server (`targets`: it alone) and do `request`.
    pub async fn connect_and_run(
        inventory: &Inventory,
        targets: Vec<ConnectOptions>,
        ctx: SshContext,
        settings: FleetSettings,
        log: RunLog,
        dest: PathBuf,
        request: Request,
    ) -> anyhow::Result<Outcome> {
        let fleet =
            Fleet::connect_all(targets, ctx, settings, Arc::new(crate::fleet::Silent)).await;
        let engine = Engine::from_fleet(fleet, log, Arc::new(Quiet));
        Backup::run(engine, inventory, dest, request).await
    }

    /// Do `request` over any engine holding the first server (a scripted one in unit tests).
    /// `Err`: a local step failed (the backup folder or its manifest).
    pub async fn run(
        engine: Engine,
        inventory: &Inventory,
        dest: PathBuf,
        request: Request,
    ) -> anyhow::Result<Outcome> {
        let first = crate::k3s::install::first_server(inventory)?;
        let id = engine
            .id_of(&first.name)
            .ok_or_else(|| anyhow::anyhow!("the first server {} is not in this run", first.name))?;
        let mut run = BackupRun {
            failure: engine.unreachable(id).cloned(),
            engine,
            first: id,
            cluster: inventory.cluster.name.clone(),
            dest,
            request,
            listed: None,
            taken: None,
            saved: None,
            pruned_local: Vec::new(),
            pruned_server: Vec::new(),
        };
        let cancel = run.engine.cancel().clone();
        let result = if run.failure.is_some() {
            Ok(Vec::new())
        } else {
            phases(&run.request).run(&mut run, &cancel, host_name).await
        };
        run.engine.close().await;
        result?;
        Ok(Outcome {
            saved: run.saved,
            listed: run.listed,
            pruned_local: run.pruned_local,
            pruned_server: run.pruned_server,
            failure: run.failure,
        })
    }
}
