//! The [`Replace`] handle the CLI drives: [`Replace::survey`] connects to the first server, takes
//! the cluster lock and decides from the node list; the CLI shows the plan and asks; then
//! [`Replace::delete`] deletes the old Node and hands the lock on ([`HandedLock`]) to the `up
//! --limit NEW` that follows in the same process, or [`Replace::abort`] gives it back.

use std::sync::Arc;

use crate::engine::runlog::RunLog;
use crate::engine::{Engine, HostId};
use crate::fleet::{Fleet, FleetSettings};
use crate::inventory::Inventory;
use crate::phases::Quiet;
use crate::phases::lock::ClusterLock;
use crate::ssh::{ConnectOptions, SshContext};

use super::{OldNode, ReplaceRun, replace_phases, survey_phases};

/// A replacement between its decision and the deletion: the session open, the lock held.
pub struct Replace {
    run: ReplaceRun,
}

fn host_name(cx: &ReplaceRun, id: HostId) -> String {
    cx.engine.name(id).to_owned()
}

/// The first server alone, connected (its events not shown: the plan is the output).
async fn connect(
    targets: Vec<ConnectOptions>,
    ctx: SshContext,
    settings: FleetSettings,
    log: RunLog,
) -> Engine {
    let fleet = Fleet::connect_all(targets, ctx, settings, Arc::new(crate::fleet::Silent)).await;
    Engine::from_fleet(fleet, log, Arc::new(Quiet))
}

impl Replace {
    /// Connect to the first server (`targets`: it alone), take the cluster lock, read the node
    /// list and decide what to do with `old_node`.
    pub async fn survey(
        inventory: &Inventory,
        old_node: String,
        targets: Vec<ConnectOptions>,
        ctx: SshContext,
        settings: FleetSettings,
        log: RunLog,
    ) -> anyhow::Result<Replace> {
        let engine = connect(targets, ctx, settings, log).await;
        Replace::start(engine, inventory, old_node).await
    }

    /// The survey half over any engine (the first server, or a scripted one in unit tests).
    pub async fn start(
        engine: Engine,
        inventory: &Inventory,
        old_node: String,
    ) -> anyhow::Result<Replace> {
        let first = crate::k3s::install::first_server(inventory)?;
        let id = engine
            .id_of(&first.name)
            .ok_or_else(|| anyhow::anyhow!("the first server {} is not in this run", first.name))?;
        let lock = ClusterLock::new(
            id,
            crate::phases::lock::new_run_id(),
            "edgeops replace",
            inventory.cluster.name.clone(),
            inventory.cluster.lock_expiry,
        );
        let mut run = ReplaceRun {
            engine,
            first: id,
            first_node: first.node_name.clone(),
            old_node,
            lock,
            decision: None,
            delete_failed: None,
            messages: Vec::new(),
        };
        let cancel = run.engine.cancel().clone();
        match survey_phases().run(&mut run, &cancel, host_name).await {
            Ok(_) => Ok(Replace { run }),
            Err(e) => {
                Replace { run }.abort().await;
                Err(e)
            }
        }
    }

    /// What the node list said about the old node, or why the replacement is refused.
    pub fn decision(&self) -> Result<&OldNode, &str> {
        match &self.run.decision {
            Some(Ok(old)) => Ok(old),
            Some(Err(why)) => Err(why),
            None => Err("the node list was not read"),
        }
    }

    /// Notes so far (a stale lock taken over).
    pub fn messages(&self) -> &[String] {
        &self.run.messages
    }

    pub fn first_name(&self) -> &str {
        self.run.first_name()
    }

    /// Stop here: give the lock back and close the session; nothing was changed.
    pub async fn abort(self) {
        let mut run = self.run;
        run.lock.release(&run.engine).await;
        run.engine.close().await;
    }

    /// Delete the old Node when it is in the cluster, then close the session and hand the lock
    /// on to the `up` that brings the new board in. `Err`: the deletion failed (the lock is
    /// given back).
    pub async fn delete(self) -> Result<HandedLock, String> {
        let mut run = self.run;
        let cancel = run.engine.cancel().clone();
        let failed = match replace_phases().run(&mut run, &cancel, host_name).await {
            Err(e) => Some(format!("{e:#}")),
            Ok(_) if cancel.is_cancelled() => Some("interrupted".to_owned()),
            Ok(_) => run.delete_failed.take(),
        };
        if let Some(why) = failed {
            Replace { run }.abort().await;
            return Err(why);
        }
        run.engine.close().await;
        Ok(HandedLock { lock: run.lock })
    }
}

/// The lock a replacement holds while the `up` it runs in the same process brings the new
/// board in: that `up` takes it on (the lock script knows this process's own lock) and releases
/// it at its end.
pub struct HandedLock {
    lock: ClusterLock,
}

impl HandedLock {
    /// After an `up` that ended before it took the lock on: give it back (a note when that
    /// could not be done). Harmless when `up` took it: only this run's lock is removed.
    pub async fn give_back(
        mut self,
        targets: Vec<ConnectOptions>,
        ctx: SshContext,
        settings: FleetSettings,
        log: RunLog,
    ) -> Option<String> {
        let engine = connect(targets, ctx, settings, log).await;
        let note = self.lock.release(&engine).await;
        engine.close().await;
        note
    }
}
