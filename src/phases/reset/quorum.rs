//! `reset --limit` of servers in an embedded-etcd cluster: quorum checked before anything
//! changes ([`QuorumCheck`]) and before each server leaves ([`leave_etcd`]), and each server's
//! Node deleted (k3s then removes its etcd member) before it is uninstalled. Uninstalling first
//! would leave its member behind, counted and down, and two of three servers gone that way take
//! the quorum with them.

use std::time::Duration;

use crate::engine::{Applied, Failure, Flow, HostId, Output};
use crate::k3s::nodes;
use crate::k3s::quorum::Members;
use crate::k3s::remote;
use crate::ssh::ExecRequest;

use super::outcome::Scope;
use super::state::{Outcome, ResetRun, Step};
use crate::k3s::uninstall as scripts;

/// Bound of one node-list read or Node deletion through the first server (the API of a
/// cluster without quorum hangs: this is how long edgeops lets it).
pub const API_STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Servers leaving a cluster that stays (their etcd must keep quorum at every step).
fn leaving(cx: &ResetRun) -> Vec<HostId> {
    if cx.scope == Scope::Hosts {
        cx.todo(Step::Servers)
    } else {
        Vec::new()
    }
}

/// The first server (the API the members are read from), when servers leave.
pub(super) fn first_if_servers_leave(cx: &ResetRun) -> Vec<HostId> {
    if leaving(cx).is_empty() {
        Vec::new()
    } else {
        vec![cx.core.first]
    }
}

/// Before anything changes: can the selected servers leave one at a time with the rest keeping
/// quorum? Read-only (it runs in a dry run too); a refusal fails every host still to do and
/// stops the run.
pub(super) fn check_quorum<'a>(cx: &'a mut ResetRun, _: &'a [HostId]) -> Applied<'a> {
    Box::pin(async move {
        let nodes: Vec<String> = leaving(cx)
            .into_iter()
            .map(|id| cx.hosts[id].node_name.clone())
            .collect();
        let Err(reason) = servers_may_leave(cx, &nodes).await else {
            return Ok(Flow::Continue);
        };
        cx.core.message(format!("reset refused: {reason}"));
        for id in cx.order.clone() {
            let host = &mut cx.hosts[id];
            if host.outcome.is_none() {
                host.outcome = Some(Outcome::failed(Failure::refused(format!(
                    "refused: {reason}"
                ))));
            }
        }
        Ok(Flow::Stop(format!("refused: {reason}")))
    })
}

/// The etcd members as the first server's API reports them; `Err`: why it could not say.
async fn etcd_members(cx: &ResetRun) -> Result<Members, String> {
    let request = ExecRequest::new(remote::NODES_COMMAND)
        .sudo(true)
        .timeout(API_STEP_TIMEOUT);
    let out = cx
        .core
        .engine
        .run(
            cx.core.first,
            "etcd members (node list)",
            &request,
            Output::Logged,
        )
        .await
        .map_err(|failure| failure.reason)?;
    let list = nodes::parse_nodes(&out.stdout_lossy()).map_err(|e| e.to_string())?;
    Ok(Members::from_nodes(&list))
}

/// Can `servers` (node names, in order) leave one at a time with the rest keeping quorum?
/// `Err`: the refusal, naming the members and the way out.
async fn servers_may_leave(cx: &ResetRun, servers: &[String]) -> Result<(), String> {
    let first = cx.core.first_name();
    let members = etcd_members(cx).await.map_err(|reason| {
        format!(
            "cannot read the etcd members through the first server {first} ({reason}); if the \
             cluster lost its quorum, restore it first: `k3s server --cluster-reset` on {first} \
             (see `edgeops status`)"
        )
    })?;
    members.check_removals(servers).map_err(|why| {
        format!(
            "{why}. Nothing was changed: bring the down members back, or remove them first \
             (`edgeops reset --limit` on them)"
        )
    })
}

/// One server leaves etcd: quorum checked again, then its Node deleted (k3s removes the
/// member); only then may it be uninstalled.
pub async fn leave_etcd(cx: &ResetRun, id: HostId) -> Result<(), String> {
    let node = cx.hosts[id].node_name.clone();
    let members = etcd_members(cx).await?;
    members.check_removals(std::slice::from_ref(&node))?;
    if !members.members.iter().any(|(n, _)| *n == node) {
        return Ok(());
    }
    let request = ExecRequest::new(scripts::delete_nodes_script(std::slice::from_ref(&node)))
        .sudo(true)
        .timeout(API_STEP_TIMEOUT);
    let title = format!("remove {} from etcd", cx.core.name(id));
    let out = cx
        .core
        .engine
        .run(cx.core.first, &title, &request, Output::Logged)
        .await
        .map_err(|failure| failure.reason)?;
    let (_, _, failed) = scripts::parse_deleted(&out.stdout_lossy());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "could not delete Node {node} (its etcd member) through {}",
            cx.core.first_name()
        ))
    }
}
