//! The [`Replace`] handle the CLI drives: [`Replace::survey`] connects to the first server, takes
//! the cluster lock and decides from the node list; the CLI shows the plan and asks; then
//! [`Replace::delete`] deletes the old Node and hands the lock on ([`HandedLock`]) to the `up
//! --limit NEW` that follows in the same process, or [`Replace::abort`] gives it back.

use crate::engine::Engine;
use crate::host::lock::ClusterLock;
use crate::inventory::Inventory;
use crate::phases::run_core::{RunCore, run_phases, survey};

use super::{OldNode, ReplaceRun, replace_phases, survey_phases};

/// A replacement between its decision and the deletion: the session open, the lock held.
pub struct Replace {
    run: ReplaceRun,
}

impl Replace {
    /// The survey half over any engine (the first server, or a scripted one in unit tests).
    pub async fn start(
        engine: Engine,
        inventory: &Inventory,
        old_node: String,
    ) -> anyhow::Result<Replace> {
        let run = ReplaceRun {
            core: RunCore::new(engine, inventory, "edgeops replace")?,
            first_node: crate::k3s::install::first_server(inventory)?
                .node_name
                .clone(),
            old_node,
            decision: None,
            delete_failed: None,
        };
        Ok(Replace {
            run: survey(run, &survey_phases()).await?,
        })
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
        &self.run.core.messages
    }

    pub fn first_name(&self) -> &str {
        self.run.core.first_name()
    }

    /// Stop here: give the lock back and close the session; nothing was changed.
    pub async fn abort(mut self) {
        self.run.core.finish().await;
    }

    /// Delete the old Node when it is in the cluster, then close the session and hand the lock
    /// on to the `up` that brings the new board in. `Err`: the deletion failed (the lock is
    /// given back).
    pub async fn delete(self) -> Result<HandedLock, String> {
        let mut run = self.run;
        let failed = match run_phases(&mut run, &replace_phases()).await {
            Err(e) => Some(format!("{e:#}")),
            Ok(()) if run.core.engine.is_cancelled() => Some("interrupted".to_owned()),
            Ok(()) => run.delete_failed.take(),
        };
        if let Some(why) = failed {
            Replace { run }.abort().await;
            return Err(why);
        }
        run.core.engine.close().await;
        Ok(HandedLock {
            lock: run.core.lock,
        })
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
    /// `engine`: connected to the first server.
    pub async fn give_back(mut self, engine: Engine) -> Option<String> {
        let note = self.lock.release(&engine).await;
        engine.close().await;
        note
    }
}
