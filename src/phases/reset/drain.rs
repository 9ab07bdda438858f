//! The drain phase of `reset --limit`: each host leaving a cluster that stays is cordoned and
//! drained through the first server before anything on it changes, so its pods move to the
//! nodes that stay (one node at a time: pods evicted from one must not land on the next to go).
//! A drain that fails or times out leaves the host installed and uncordons it again (it stays a
//! working member; kubectl itself would leave it cordoned, but edgeops changed nothing else on it
//! and leaves no half-done removal behind); the reason names the blocking pods.

use crate::engine::{Applied, Failure, Flow, HostId};
use crate::phases::drain::{self, DrainError, Drained};

use super::outcome::Scope;
use super::state::{Outcome, ResetRun, Step};

/// Hosts leaving a cluster that stays, when draining is on (not `--skip-drain`).
pub(super) fn to_drain(cx: &ResetRun) -> Vec<HostId> {
    if cx.scope != Scope::Hosts || cx.options.drain.is_none() {
        return Vec::new();
    }
    let mut hosts = cx.todo(Step::Agents);
    hosts.extend(cx.todo(Step::Servers));
    hosts
}

pub(super) fn plan_drain(cx: &mut ResetRun, hosts: &[HostId]) -> Vec<(HostId, String)> {
    let how = cx
        .options
        .drain
        .as_ref()
        .map(|d| d.describe())
        .unwrap_or_default();
    let first = cx.core.first_name().to_owned();
    hosts
        .iter()
        .map(|&id| {
            let node = &cx.hosts[id].node_name;
            (
                id,
                format!("cordon and drain node {node} through {first} ({how})"),
            )
        })
        .collect()
}

pub(super) fn drain_hosts<'a>(cx: &'a mut ResetRun, hosts: &'a [HostId]) -> Applied<'a> {
    Box::pin(async move {
        for &id in hosts {
            match drain_out(cx, id).await {
                Ok(drained) => cx.hosts[id].drained = drained,
                Err(failure) => cx.hosts[id].outcome = Some(Outcome::failed(failure)),
            }
        }
        Ok(Flow::Continue)
    })
}

/// Drain one host: `Ok(true)` drained, `Ok(false)` its node is not in the cluster; `Err`: why
/// it must not be uninstalled (uncordoned again, or why that failed too).
async fn drain_out(cx: &ResetRun, id: HostId) -> Result<bool, Failure> {
    let Some(options) = cx.options.drain.as_ref() else {
        return Ok(false);
    };
    let host = cx.core.name(id).to_owned();
    let node = cx.hosts[id].node_name.clone();
    let first = cx.core.first;
    let first_name = cx.core.name(first).to_owned();
    let runs_k3s = cx.hosts[first]
        .survey
        .as_ref()
        .and_then(|s| s.as_ref().ok())
        .is_some_and(|s| s.units.iter().any(|u| u == "k3s"));
    if !runs_k3s || cx.core.engine.unreachable(first).is_some() {
        return Err(Failure::refused(format!(
            "not reset: cannot drain {node}: the first server {first_name} is unreachable or runs \
             no k3s server (pass --skip-drain to remove it without draining)"
        )));
    }
    cx.core.engine.note(&format!(
        "{host}: {} of node {node} through {first_name}",
        options.describe()
    ));
    match drain::drain(&cx.core.engine, first, &node, options).await {
        Ok(Drained::Drained) => Ok(true),
        Ok(Drained::NotInCluster) => Ok(false),
        Err(e) => {
            let uncordoned = match drain::uncordon(&cx.core.engine, first, &node).await {
                Ok(()) => "uncordoned again".to_owned(),
                Err(why) => format!(
                    "left cordoned ({}; `kubectl uncordon {node}` once fixed)",
                    why.reason
                ),
            };
            let hint = match &e {
                DrainError::Blocked { failure, .. } if failure.timed_out => {
                    " (raise --drain-timeout, add capacity, or relax the budget)"
                }
                _ => "",
            };
            let kind = match &e {
                DrainError::Failed(failure) => failure.kind,
                DrainError::Blocked { failure, .. } if failure.timed_out => {
                    crate::engine::FailureKind::TimedOut
                }
                DrainError::Blocked { .. } => crate::engine::FailureKind::Refused,
            };
            let reason = format!("not reset: {e}{hint}; k3s left installed, {uncordoned}");
            cx.core.engine.note(&format!("{host}: {reason}"));
            Err(Failure::new(kind, reason))
        }
    }
}
