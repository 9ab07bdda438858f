//! The read-only half of a restore, before the confirmation: take the cluster lock on the first
//! server (a restore must not race an `up`, `reset` or `upgrade`), then ask every host in one
//! round trip whether k3s is installed in its role and running.

use crate::engine::{Engine, Failure, Flow, HostId, Output, phase_impl};
use crate::ssh::ExecRequest;

use super::state::{Found, RestoreRun};

/// The cluster lock, on the first server. The restore goes through that server, so an
/// unreachable one ends the run here.
pub struct Lock;

impl Lock {
    async fn run(&self, cx: &mut RestoreRun, _: &[HostId]) -> anyhow::Result<Flow> {
        if let Some(failure) = cx.engine.unreachable(cx.first) {
            anyhow::bail!(
                "first server {} is unreachable, and a restore starts there: {failure} \
             (nothing was changed)",
                cx.name(cx.first)
            );
        }
        if let Some(note) = cx.lock.acquire(&cx.engine).await? {
            cx.message(note);
        }
        Ok(Flow::Continue)
    }
}

phase_impl!(Lock, RestoreRun, "lock", changes: false, select: |cx| vec![cx.first]);

async fn survey(engine: &Engine, id: HostId, request: &ExecRequest) -> Result<Found, Failure> {
    let out = engine.run(id, "survey", request, Output::Logged).await?;
    Ok(Found::parse(&out.stdout_lossy()))
}

/// Every host: k3s installed in its role? running?
pub struct SurveyHosts;

impl SurveyHosts {
    async fn run(&self, cx: &mut RestoreRun, hosts: &[HostId]) -> anyhow::Result<Flow> {
        let request = ExecRequest::new(include_str!("sh/restore-survey.sh")).sudo(true);
        let engine = &cx.engine;
        let results = engine
            .each("survey", hosts, |id| survey(engine, id, &request))
            .await;
        for (id, result) in results {
            cx.hosts[id].survey = Some(result);
        }
        Ok(Flow::Continue)
    }
}

phase_impl!(SurveyHosts, RestoreRun, "survey", changes: false, select: |cx| cx.order.clone());
