//! The GitLab phase of `up`, `plan` and `status` (see `phases::gitlab`) on the first server,
//! when the inventory has `[gitlab]`.

use super::*;

/// Which half of the GitLab phase a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GitLabStep {
    Up,
    Plan,
    Status,
}

impl Runner<'_> {
    /// On `up` it runs once the first server is up (other hosts failing does not stop it: the
    /// charts only need the first server).
    pub(super) async fn gitlab_phase(&mut self, step: GitLabStep) {
        let Some(gitlab) = &self.inventory.gitlab else {
            return;
        };
        let first = self.first_name();
        let first_state = &self.hosts[self.core.first];
        let first_ok = match step {
            GitLabStep::Status => first_state.runs_server(),
            _ => first_state.status.is_none_or(|s| s == Status::Planned),
        };
        if !first_ok && step == GitLabStep::Status {
            // No cluster yet, as the messages already say: nothing to report, nothing failed.
            return;
        }
        if !first_ok || self.core.engine.unreachable(self.core.first).is_some() {
            let why = first_state
                .reason()
                .unwrap_or("no running k3s server")
                .to_owned();
            self.gitlab = Some(GitLabReport::skipped(format!(
                "the first server {first} failed ({why}): the charts need it"
            )));
            return;
        }
        let renderer = match renderer_for(self.inventory) {
            Ok(renderer) => renderer,
            Err(e) => {
                self.gitlab = Some(GitLabReport::skipped(format!("templates: {e:#}")));
                return;
            }
        };
        let released = AtomicBool::new(false);
        let cx = PhaseContext {
            inventory: self.inventory,
            gitlab,
            renderer: &renderer,
            engine: &self.core.engine,
            first: self.core.first,
            node_arch: self.node_arch(),
            lock_release: (step == GitLabStep::Up && self.core.lock.is_held()).then_some(
                LockRelease {
                    run_id: self.core.lock.run_id(),
                    released: &released,
                },
            ),
        };
        let setup = self.options.gitlab.clone();
        let report = match (step, setup) {
            (GitLabStep::Up, Some(setup)) => gitlab_phase::up(&cx, &setup).await,
            (GitLabStep::Plan, setup) => {
                gitlab_phase::plan(&cx, setup.is_some_and(|s| s.rotate_tokens)).await
            }
            (GitLabStep::Status, _) => gitlab_phase::status(&cx).await,
            (GitLabStep::Up, None) => {
                GitLabReport::skipped("no GitLab API token was given to this run")
            }
        };
        if released.load(Ordering::SeqCst) {
            self.core.lock.gone();
        }
        self.gitlab = Some(report);
    }

    /// The `kubernetes.io/arch` every agent shares (servers when there are no agents), for the
    /// runner's node selector; `None` when they differ or are unknown.
    fn node_arch(&self) -> Option<String> {
        let arch_of = |role: Role| -> Vec<Option<&'static str>> {
            self.hosts
                .iter()
                .filter(|(_, s)| s.host.role == role)
                .map(|(_, s)| s.facts.as_ref().and_then(|f| f.arch).map(|a| a.as_str()))
                .collect()
        };
        let mut archs = arch_of(Role::Agent);
        if archs.is_empty() {
            archs = arch_of(Role::Server);
        }
        let first = (*archs.first()?)?;
        archs
            .iter()
            .all(|a| *a == Some(first))
            .then(|| first.to_owned())
    }
}
