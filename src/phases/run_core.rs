//! The part of every command's run state that is the same: the engine, the first server, the
//! cluster lock, the notes and the phase records ([`RunCore`]); how it is made from the
//! inventory, how a command runs its phase list on it ([`run_phases`]) and how every run ends
//! ([`RunCore::finish`]: the lock given back, also after Ctrl-C, and the sessions closed).

use crate::engine::{Engine, HostId, Manager, PerHost, PhaseRecord};
use crate::inventory::{Host, Inventory};

use crate::host::lock::ClusterLock;

/// What every command's run state holds, whatever the command.
pub struct RunCore {
    pub engine: Engine,
    /// Where the lock, the API and what is done once live.
    pub first: HostId,
    pub cluster: String,
    /// Taken by the commands that change the cluster; a lock never taken is never released.
    pub lock: ClusterLock,
    /// Notes shown as they happen and kept for the report.
    pub messages: Vec<String>,
    /// The phases run so far, in order.
    pub phases: Vec<PhaseRecord>,
}

impl RunCore {
    /// The core of a run over `engine`, whose hosts include the inventory's first server.
    /// `command`: what the lock file says holds the lock (`edgeops reset`); a lock left behind
    /// is taken over after the inventory's `lock_expiry`.
    pub fn new(
        engine: Engine,
        inventory: &Inventory,
        command: &'static str,
    ) -> anyhow::Result<RunCore> {
        let first_name = &crate::k3s::install::first_server(inventory)?.name;
        let first = engine.id_of(first_name).ok_or_else(|| {
            anyhow::anyhow!("the first server {first_name} is not among the hosts of the run")
        })?;
        let cluster = inventory.cluster.name.clone();
        Ok(RunCore {
            lock: ClusterLock::new(
                first,
                command,
                cluster.clone(),
                inventory.cluster.lock_expiry,
            ),
            engine,
            first,
            cluster,
            messages: Vec::new(),
            phases: Vec::new(),
        })
    }

    pub fn name(&self, id: HostId) -> &str {
        self.engine.name(id)
    }

    pub fn first_name(&self) -> &str {
        self.engine.name(self.first)
    }

    /// Show a note now and keep it for the report.
    pub fn message(&mut self, text: String) {
        self.engine.note(&text);
        self.messages.push(text);
    }

    /// The run's log folder, for the report.
    pub fn log_dir(&self) -> Option<String> {
        self.engine.log().dir().map(|d| d.display().to_string())
    }

    /// Give the lock back when this run holds it (a note when it could not) and close the
    /// sessions. Every run ends here, whatever happened before.
    pub async fn finish(&mut self) {
        if let Some(note) = self.lock.release(&self.engine).await {
            self.message(note);
        }
        self.engine.close().await;
    }
}

/// A command's run state, which holds a [`RunCore`].
pub trait Run: Send {
    fn core(&self) -> &RunCore;
    fn core_mut(&mut self) -> &mut RunCore;
}

/// Run `phases` in order over `cx` (stopping at Ctrl-C); their records join the run's. An `Err`
/// (a phase that could not go on) ends the list; the records of the phases before it are lost
/// with it, and the caller says the error.
pub async fn run_phases<C: Run>(cx: &mut C, phases: &Manager<'_, C>) -> anyhow::Result<()> {
    let cancel = cx.core().engine.cancel().clone();
    let records = phases
        .run(cx, &cancel, |cx, id| cx.core().name(id).to_owned())
        .await?;
    cx.core_mut().phases.extend(records);
    Ok(())
}

/// The read-only first half of a command that asks before it changes anything (reset,
/// restore, replace): `phases` run on the new run state `cx`, which comes back for the plan and
/// the question. On an error the run is ended (the lock given back, the sessions closed) and
/// the error returned.
pub async fn survey<C: Run>(mut cx: C, phases: &Manager<'_, C>) -> anyhow::Result<C> {
    match run_phases(&mut cx, phases).await {
        Ok(()) => Ok(cx),
        Err(e) => {
            cx.core_mut().finish().await;
            Err(e)
        }
    }
}

/// Each host of `engine` with its entry among `hosts` (the inventory's, or a selection), in the
/// engine's order; an error names the hosts that have none.
pub fn inventory_hosts(engine: &Engine, hosts: &[Host]) -> anyhow::Result<PerHost<Host>> {
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for id in engine.ids() {
        let name = engine.name(id);
        match hosts.iter().find(|h| h.name == name) {
            Some(host) => found.push(host.clone()),
            None => missing.push(name.to_owned()),
        }
    }
    anyhow::ensure!(
        missing.is_empty(),
        "not in the inventory: {}",
        missing.join(", ")
    );
    Ok(PerHost::new(found))
}

/// `impl Run for TYPE` over its `core` field: every run state's one line.
macro_rules! impl_run {
    ($t:ty) => {
        impl $crate::phases::run_core::Run for $t {
            fn core(&self) -> &$crate::phases::run_core::RunCore {
                &self.core
            }

            fn core_mut(&mut self) -> &mut $crate::phases::run_core::RunCore {
                &mut self.core
            }
        }
    };
}
pub(crate) use impl_run;
