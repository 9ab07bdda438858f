//! Scope `Hosts`: delete the Node objects of the hosts that left the cluster, through the first
//! server (one round trip), so a re-flashed board rejoins under the same name. A cluster that
//! cannot be reached is a note, not a host failure: the hosts themselves are clean.

use std::time::Duration;

use crate::engine::{Applied, Flow, HostId, Output, same_line};
use crate::ssh::ExecRequest;

use super::outcome::Scope;
use super::state::ResetRun;
use crate::k3s::uninstall as scripts;

/// Deleting the reset hosts' Node objects through the first server.
pub const DELETE_NODES_TIMEOUT: Duration = Duration::from_secs(120);

/// Node names of the selected hosts that are clean now (reset, or found clean), or are
/// still to be reset (a dry run plans before any is).
fn nodes_left(cx: &ResetRun) -> Vec<String> {
    cx.order
        .iter()
        .filter(|&&id| cx.hosts[id].outcome.as_ref().is_none_or(|o| !o.is_failed()))
        .map(|&id| cx.hosts[id].node_name.clone())
        .collect()
}

/// Whether the first server's survey found its k3s server unit.
fn server_runs(cx: &ResetRun) -> bool {
    matches!(&cx.hosts[cx.core.first].survey, Some(Ok(s)) if s.units.iter().any(|u| u == "k3s"))
}

/// The first server, when the cluster stays, hosts left it and its survey answered.
pub(super) fn first_if_hosts_left(cx: &ResetRun) -> Vec<HostId> {
    let surveyed = matches!(cx.hosts[cx.core.first].survey, Some(Ok(_)));
    if cx.scope == Scope::Hosts && surveyed && !nodes_left(cx).is_empty() {
        vec![cx.core.first]
    } else {
        Vec::new()
    }
}

pub(super) fn plan_delete_nodes(cx: &mut ResetRun, hosts: &[HostId]) -> Vec<(HostId, String)> {
    let line = if server_runs(cx) {
        format!(
            "delete Node object(s) {} once their hosts are reset",
            nodes_left(cx).join(", ")
        )
    } else {
        "runs no k3s server: no Node objects to delete".to_owned()
    };
    same_line(hosts, &line)
}

pub(super) fn delete_nodes<'a>(cx: &'a mut ResetRun, _: &'a [HostId]) -> Applied<'a> {
    Box::pin(async move {
        let first = cx.core.first_name().to_owned();
        if !server_runs(cx) {
            cx.core.message(format!(
                "first server {first} runs no k3s server: no Node objects to delete"
            ));
            return Ok(Flow::Continue);
        }
        let nodes = nodes_left(cx);
        let request = ExecRequest::new(scripts::delete_nodes_script(&nodes))
            .sudo(true)
            .timeout(DELETE_NODES_TIMEOUT);
        let engine = &cx.core.engine;
        let result = engine
            .each("nodes", &[cx.core.first], |id| {
                engine.run(id, "delete nodes", &request, Output::Logged)
            })
            .await
            .pop()
            .map(|(_, result)| result);
        match result {
            Some(Ok(out)) => {
                let (deleted, _absent, failed) = scripts::parse_deleted(&out.stdout_lossy());
                if !deleted.is_empty() {
                    cx.core.message(format!(
                        "deleted node(s) {} from the cluster (through {first})",
                        deleted.join(", ")
                    ));
                }
                if !failed.is_empty() {
                    cx.core.message(format!(
                        "could not delete node(s) {} through {first}: see its log; delete \
                         them with `kubectl delete node` before they rejoin",
                        failed.join(", ")
                    ));
                }
            }
            Some(Err(failure)) => cx.core.message(format!(
                "could not delete the Node objects of {} through {first}: {failure}",
                nodes.join(", ")
            )),
            None => {}
        }
        Ok(Flow::Continue)
    })
}
