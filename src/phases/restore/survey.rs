//! The read-only half of a restore, before the confirmation: take the cluster lock on the first
//! server (a restore must not race an `up`, `reset` or `upgrade`), then ask every host in one
//! round trip whether k3s is installed in its role and running.

use crate::engine::{Applied, Engine, Failure, Flow, HostId, Output};
use crate::phases::steps;
use crate::ssh::ExecRequest;

use crate::k3s::snapshot::{Installed, RESTORE_SURVEY_SCRIPT};

use super::state::RestoreRun;

/// The cluster lock, on the first server. The restore goes through that server, so an
/// unreachable one ends the run here.
pub(super) fn lock<'b>(cx: &'b mut RestoreRun, _: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        if let Some(failure) = cx.core.engine.unreachable(cx.core.first) {
            anyhow::bail!(
                "first server {} is unreachable, and a restore starts there: {failure} \
             (nothing was changed)",
                cx.core.first_name()
            );
        }
        steps::take_lock(&mut cx.core).await?;
        Ok(Flow::Continue)
    })
}

async fn survey(engine: &Engine, id: HostId, request: &ExecRequest) -> Result<Installed, Failure> {
    let out = engine.run(id, "survey", request, Output::Logged).await?;
    Ok(Installed::parse(&out.stdout_lossy()))
}

/// Every host: k3s installed in its role? running?
pub(super) fn survey_hosts<'b>(cx: &'b mut RestoreRun, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let request = ExecRequest::new(RESTORE_SURVEY_SCRIPT).sudo(true);
        let engine = &cx.core.engine;
        let results = engine
            .each("survey", hosts, |id| survey(engine, id, &request))
            .await;
        for (id, result) in results {
            cx.hosts[id].survey = Some(result);
        }
        Ok(Flow::Continue)
    })
}
