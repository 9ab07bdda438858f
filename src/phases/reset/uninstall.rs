//! The uninstall phases: agents all at once (the fleet's window), then the other servers one at
//! a time (each leaving etcd first when the cluster stays), then the first server. A server that
//! fails stops the roll: the servers after it, the first server too, are skipped with the reason.

use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::engine::{Failure, Flow, HostId, Output, Phase};
use crate::ssh::ExecRequest;

use super::outcome::Scope;
use super::quorum::leave_etcd;
use super::state::{Outcome, ResetRun, Step};
use crate::k3s::uninstall::{self as scripts, Survey, UninstallOutput};

/// The uninstall kills containers and removes image stores: give it room on a slow board.
pub const UNINSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Uninstall the hosts of one step.
pub struct Uninstall(pub Step);

impl Phase<ResetRun> for Uninstall {
    fn title(&self) -> &'static str {
        self.0.as_str()
    }

    fn select(&self, cx: &ResetRun) -> Vec<HostId> {
        cx.todo(self.0)
    }

    fn apply<'a>(
        &'a self,
        cx: &'a mut ResetRun,
        hosts: &'a [HostId],
    ) -> BoxFuture<'a, anyhow::Result<Flow>> {
        Box::pin(async move {
            let outcomes = match self.0 {
                Step::Agents => all_at_once(cx, hosts).await,
                Step::Servers | Step::FirstServer => one_at_a_time(cx, self.0, hosts).await,
            };
            let mut roll_failed = None;
            for (id, mut outcome) in outcomes {
                // Say in the method that the host was drained before its uninstall.
                if cx.hosts[id].drained && !outcome.is_failed() {
                    outcome.method = Some(match outcome.method {
                        Some(method) => format!("drained, {method}"),
                        None => "drained".to_owned(),
                    });
                }
                if self.0 != Step::Agents && outcome.is_failed() && roll_failed.is_none() {
                    roll_failed = Some(id);
                }
                cx.hosts[id].outcome = Some(outcome);
            }
            // The first server waits for the servers before it: skipped, with the reason.
            if let Some(failed) = roll_failed
                && self.0 == Step::Servers
            {
                let why = format!(
                    "not reset: the server before it ({}) failed",
                    cx.core.name(failed)
                );
                for id in cx.todo(Step::FirstServer) {
                    cx.hosts[id].outcome = Some(Outcome::failed(Failure::skipped(why.clone())));
                }
            }
            Ok(Flow::Continue)
        })
    }

    fn plan(&self, cx: &mut ResetRun, hosts: &[HostId]) -> Vec<(HostId, String)> {
        hosts
            .iter()
            .map(|&id| {
                let survey = cx.hosts[id].survey.as_ref().and_then(|s| s.as_ref().ok());
                let mut line = format!(
                    "uninstall with {}; wipes {}",
                    survey.map_or_else(|| "-".to_owned(), Survey::method),
                    survey.map_or_else(|| "?".to_owned(), Survey::wipes)
                );
                if self.0 == Step::Servers && cx.scope == Scope::Hosts {
                    line = format!("delete its Node (etcd member) first, then {line}");
                }
                (id, line)
            })
            .collect()
    }
}

async fn all_at_once(cx: &ResetRun, hosts: &[HostId]) -> Vec<(HostId, Outcome)> {
    let partial = Mutex::new(Vec::new());
    let results = cx
        .core
        .engine
        .each_noting(
            Step::Agents.as_str(),
            hosts,
            cx.core.engine.settings().concurrency,
            |id| uninstall(cx, id, &partial),
            |_, outcome| said(outcome),
        )
        .await;
    outcomes(results, partial)
}

/// One at a time; after a failure the rest are skipped, naming the server that failed.
async fn one_at_a_time(cx: &ResetRun, step: Step, hosts: &[HostId]) -> Vec<(HostId, Outcome)> {
    let partial = Mutex::new(Vec::new());
    let stopped: Mutex<Option<String>> = Mutex::new(None);
    let leave_first = step == Step::Servers && cx.scope == Scope::Hosts;
    let results = cx
        .core
        .engine
        .each_noting(
            step.as_str(),
            hosts,
            1,
            |id| roll_one(cx, id, leave_first, &stopped, &partial),
            |_, outcome| said(outcome),
        )
        .await;
    outcomes(results, partial)
}

/// What a progress view without a terminal says of a host that was reset.
fn said(outcome: &Outcome) -> String {
    format!("reset ({})", outcome.method.as_deref().unwrap_or_default())
}

/// One server of the roll: skipped when one before it failed; leaves etcd first when the
/// cluster stays (`leave_first`); a failure stops the servers after it.
async fn roll_one(
    cx: &ResetRun,
    id: HostId,
    leave_first: bool,
    stopped: &Mutex<Option<String>>,
    partial: &Mutex<Vec<(HostId, UninstallOutput)>>,
) -> Result<Outcome, Failure> {
    let stop = |why: String| *stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    if let Some(why) = stopped.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return Err(Failure::skipped(why));
    }
    if leave_first && let Err(reason) = leave_etcd(cx, id).await {
        stop(format!(
            "not reset: the server before it ({}) could not leave etcd",
            cx.core.name(id)
        ));
        return Err(Failure::refused(format!("not reset: {reason}")));
    }
    let result = uninstall(cx, id, partial).await;
    if result.is_err() {
        stop(format!(
            "not reset: the server before it ({}) failed",
            cx.core.name(id)
        ));
    }
    result
}

/// The outcome of each host: a failed uninstall keeps what its script printed (what was
/// removed, how) from `partial`.
fn outcomes(
    results: Vec<(HostId, Result<Outcome, Failure>)>,
    partial: Mutex<Vec<(HostId, UninstallOutput)>>,
) -> Vec<(HostId, Outcome)> {
    let mut partial = partial.into_inner().unwrap_or_else(|e| e.into_inner());
    results
        .into_iter()
        .map(|(id, result)| {
            let outcome = result.unwrap_or_else(|failure| {
                let mut outcome = Outcome::failed(failure);
                if let Some(i) = partial.iter().position(|(p, _)| *p == id) {
                    let (_, printed) = partial.swap_remove(i);
                    outcome.method =
                        Some(printed.method()).filter(|_| printed != UninstallOutput::default());
                    outcome.removed = printed.removed;
                }
                outcome
            });
            (id, outcome)
        })
        .collect()
}

/// Uninstall k3s and edgeops's files from one host (one round trip); `Err` when it did not end
/// clean (what the script printed goes to `partial`).
async fn uninstall(
    cx: &ResetRun,
    id: HostId,
    partial: &Mutex<Vec<(HostId, UninstallOutput)>>,
) -> Result<Outcome, Failure> {
    let request = ExecRequest::new(scripts::uninstall_script(cx.core.lock.run_id()))
        .sudo(true)
        .timeout(UNINSTALL_TIMEOUT);
    let out = cx
        .core
        .engine
        .exec(id, "uninstall", &request, Output::Logged)
        .await?;
    let printed = UninstallOutput::parse(&out.stdout_lossy());
    if out.success() {
        return Ok(Outcome::reset(printed.method(), printed.removed));
    }
    let mut failure = Failure::exited("uninstall", &out, false, cx.core.engine.log().redactor());
    if !printed.remaining.is_empty() {
        failure.reason = format!(
            "still present after reset: {}",
            printed.remaining.join(", ")
        );
    }
    partial
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, printed));
    Err(failure)
}
