//! The [`Restore`] handle the CLI drives: [`Restore::survey`] connects and runs the survey
//! phases (lock, survey); the CLI shows [`Restore::plan`] and asks; then [`Restore::execute`]
//! runs the restore phases, [`Restore::dry_run`] plans them instead, or [`Restore::abort`]
//! stops. Each ends by giving the lock back (also after Ctrl-C) and closing the sessions.

use crate::engine::{Engine, PhaseRecord};
use crate::inventory::Inventory;
use crate::phases::run_core::{run_phases, survey};

use super::state::{HostPlan, RestoreReport, RestoreRun, Snapshot};
use super::{RestoreOptions, restore_phases, survey_phases};

/// A restore between its survey and its execution: sessions open, the lock held.
pub struct Restore {
    run: RestoreRun,
}

impl Restore {
    /// The survey half over any engine (connected hosts, or scripted ones in unit tests).
    pub async fn start(
        engine: Engine,
        inventory: &Inventory,
        options: RestoreOptions,
    ) -> anyhow::Result<Restore> {
        let run = RestoreRun::new(engine, inventory, options)?;
        Ok(Restore {
            run: survey(run, &survey_phases()).await?,
        })
    }

    /// Per host, in execution order: what was found and what the restore will do.
    pub fn plan(&self) -> Vec<HostPlan> {
        self.run.plan()
    }

    /// Hosts that stop the restore before it starts.
    pub fn problems(&self) -> Vec<String> {
        self.plan()
            .into_iter()
            .filter_map(|p| p.problem.map(|why| format!("{}: {why}", p.host)))
            .collect()
    }

    /// Notes so far (a stale lock taken over).
    pub fn messages(&self) -> &[String] {
        &self.run.core.messages
    }

    /// Stop here: release the lock and close the sessions; nothing was changed.
    pub async fn abort(mut self) {
        self.run.core.finish().await;
    }

    /// Restore `snapshot` (checked against its manifest): run the restore phases in order (see
    /// [`super::RESTORE`]), release the lock, close the sessions, and report.
    pub async fn execute(self, snapshot: Snapshot) -> RestoreReport {
        self.run_stage(snapshot, false).await.report()
    }

    /// The dry run: the snapshot check runs, every phase that changes something says what it
    /// would do; nothing is changed. Then the lock is released.
    pub async fn dry_run(self, snapshot: Snapshot) -> Vec<PhaseRecord> {
        std::mem::take(&mut self.run_stage(snapshot, true).await.core.phases)
    }

    async fn run_stage(self, snapshot: Snapshot, dry_run: bool) -> RestoreRun {
        let mut run = self.run;
        run.snapshot = Some(snapshot);
        if let Err(e) = run_phases(&mut run, &restore_phases(dry_run)).await {
            run.stopped = Some(format!("{e:#}"));
            run.core.message(format!("{e:#}"));
        }
        if run.core.engine.is_cancelled() && run.stopped.is_none() {
            run.stopped = Some("cancelled".to_owned());
        }
        run.core.finish().await;
        run
    }
}
