//! The read-only half of a reset, before the confirmation: take the `up` lock on the first
//! server (a reset must not race an `up`), then survey every host in one round trip each: what
//! k3s and edgeops left there. Hosts found clean are done; hosts that cannot tell fail.

use crate::engine::{Applied, Engine, Failure, Flow, HostId, Output};
use crate::phases::steps;
use crate::ssh::ExecRequest;

use super::ResetError;
use super::outcome::Scope;
use super::state::{Outcome, ResetRun};
use crate::k3s::uninstall::{self as scripts, Survey};

/// The same lock as `up`, on the first server when it is reachable. Unreachable, no `up` can be
/// running against it either; a note says so.
pub(super) fn take_lock<'a>(cx: &'a mut ResetRun, _: &'a [HostId]) -> Applied<'a> {
    Box::pin(async move {
        if cx.core.engine.unreachable(cx.core.first).is_some() {
            let first = cx.core.first_name().to_owned();
            cx.core.message(format!(
                "first server {first} is unreachable: the up lock was not taken"
            ));
            return Ok(Flow::Continue);
        }
        steps::take_lock(&mut cx.core)
            .await
            .map_err(ResetError::Lock)?;
        Ok(Flow::Continue)
    })
}

async fn survey(engine: &Engine, id: HostId, request: &ExecRequest) -> Result<Survey, Failure> {
    let out = engine.run(id, "survey", request, Output::Logged).await?;
    Ok(Survey::parse(&out.stdout_lossy()))
}

/// Every host of the run (the first server too: does it run k3s, for the Node deletions).
pub(super) fn survey_hosts<'a>(cx: &'a mut ResetRun, hosts: &'a [HostId]) -> Applied<'a> {
    Box::pin(async move {
        let request = ExecRequest::new(scripts::survey_script()).sudo(true);
        let engine = &cx.core.engine;
        let results = engine
            .each("survey", hosts, |id| survey(engine, id, &request))
            .await;
        for (id, result) in results {
            let host = &mut cx.hosts[id];
            if host.step.is_some() {
                host.outcome = match &result {
                    Err(failure) => Some(Outcome::failed(failure.clone())),
                    Ok(survey) if survey.is_clean() => Some(Outcome::clean()),
                    Ok(_) => None,
                };
            }
            host.survey = Some(result);
        }
        if cx.scope == Scope::Hosts
            && let Some(Err(failure)) = &cx.hosts[cx.core.first].survey
        {
            let first = cx.core.first_name().to_owned();
            let reason = failure.reason.clone();
            cx.core.message(format!(
                "first server {first}: {reason}; the Node objects of the reset hosts cannot \
                 be deleted from the cluster (do it with `kubectl delete node`)"
            ));
        }
        Ok(Flow::Continue)
    })
}
