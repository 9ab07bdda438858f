//! The [`Reset`] handle the CLI drives: [`Reset::survey`] connects and runs the survey phases
//! (lock, survey); the CLI shows [`Reset::plan`] and asks; then [`Reset::execute`] runs the
//! reset phases, [`Reset::dry_run`] plans them instead, or [`Reset::abort`] stops. Each ends by
//! giving the lock back (also after Ctrl-C) and closing the sessions.

use crate::engine::{Engine, PhaseResult};
use crate::inventory::Inventory;
use crate::phases::run_core::{run_phases, survey};

use super::outcome::{HostPlan, ResetPlan, ResetReport, Scope};
use super::state::ResetRun;
use super::{GitLabReset, KubeconfigEntry, ResetOptions, reset_phases, survey_phases};
use crate::k3s::uninstall::Survey;

/// A reset between its survey and its execution: sessions open, the lock held.
pub struct Reset {
    run: ResetRun,
}

impl Reset {
    /// Connect-free start: over `engine` (connected to the selected hosts and the first server,
    /// or scripted ones in unit tests) take the lock and survey every host in one round trip.
    pub async fn start(
        engine: Engine,
        inventory: &Inventory,
        scope: Scope,
        selected: &[String],
        options: ResetOptions,
    ) -> anyhow::Result<Reset> {
        let run = ResetRun::new(engine, inventory, scope, selected, options)?;
        Ok(Reset {
            run: survey(run, &survey_phases()).await?,
        })
    }

    /// Per selected host, in execution order: what was found (or why the survey failed).
    pub fn plan(&self) -> Vec<HostPlan> {
        self.run.plan()
    }

    pub fn scope(&self) -> Scope {
        self.run.scope
    }

    /// Whether the cluster's context is in the user's kubeconfig (scope `Cluster` only: a
    /// partial reset leaves the kubeconfig alone).
    pub fn kubeconfig_to_remove(&self) -> anyhow::Result<Option<&KubeconfigEntry>> {
        if self.run.scope != Scope::Cluster {
            return Ok(None);
        }
        let entry = &self.run.options.kubeconfig;
        Ok(entry.present()?.then_some(entry))
    }

    /// How each host leaving a cluster that stays is drained first (`None`: not drained).
    pub fn drain(&self) -> Option<&crate::k3s::drain::DrainOptions> {
        self.run
            .options
            .drain
            .as_ref()
            .filter(|_| self.run.scope == Scope::Hosts)
    }

    /// What `--gitlab` will remove from GitLab, when asked for.
    pub fn gitlab(&self) -> Option<&GitLabReset> {
        self.run.options.gitlab.as_ref()
    }

    /// Nothing to uninstall on any reachable selected host, no kubeconfig entry, and no
    /// `--gitlab` (which may always have something to remove).
    pub fn nothing_to_do(&self) -> bool {
        self.run.options.gitlab.is_none()
            && self
                .run
                .plan()
                .iter()
                .all(|p| p.found.as_ref().is_none_or(Survey::is_clean))
            && self.kubeconfig_to_remove().ok().flatten().is_none()
    }

    /// Stop here: release the lock and close the sessions; nothing was changed.
    pub async fn abort(mut self) {
        self.run.core.finish().await;
    }

    /// Run the reset phases in order (see [`super::RESET`]), release the lock, close the
    /// sessions, and report.
    pub async fn execute(self) -> ResetReport {
        let mut run = self.run;
        if let Err(e) = run_phases(&mut run, &reset_phases(false)).await {
            run.core.message(format!("{e:#}"));
        }
        run.core.finish().await;
        run.report()
    }

    /// The dry run: the read-only quorum check runs, every phase that changes something says
    /// what it would do; nothing is changed. Then the lock is released.
    pub async fn dry_run(self) -> ResetPlan {
        let mut run = self.run;
        let hosts = run.plan();
        if let Err(e) = run_phases(&mut run, &reset_phases(true)).await {
            run.core.message(format!("{e:#}"));
        }
        let refused = run.core.phases.iter().find_map(|p| match &p.result {
            PhaseResult::NotReached(why) => Some(why.clone()),
            _ => None,
        });
        run.core.finish().await;
        ResetPlan {
            cluster: run.core.cluster.clone(),
            scope: run.scope,
            dry_run: true,
            hosts,
            refused,
            messages: std::mem::take(&mut run.core.messages),
            phases: std::mem::take(&mut run.core.phases),
        }
    }
}
