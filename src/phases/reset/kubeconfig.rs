//! The phase that removes the cluster's entry from the user's kubeconfig once the first server
//! is reset (scope `Cluster`), and its plan; the entry, and how it is found and removed (other
//! entries stay), are `crate::k3s::kubeconfig`'s.

use crate::engine::{Applied, Flow, HostId, same_line};
use crate::k3s::kubeconfig::remove_kubeconfig;

use super::outcome::Scope;
use super::state::ResetRun;

/// The first server, whose reset it follows (scope `Cluster` only: a cluster that stays
/// keeps its context).
pub(super) fn first_if_cluster(cx: &ResetRun) -> Vec<HostId> {
    if cx.scope == Scope::Cluster {
        vec![cx.core.first]
    } else {
        Vec::new()
    }
}

pub(super) fn plan_kubeconfig(cx: &mut ResetRun, hosts: &[HostId]) -> Vec<(HostId, String)> {
    let entry = &cx.options.kubeconfig;
    let line = match entry.present() {
        Ok(true) => format!(
            "remove context {} (its cluster and user too) from {}",
            entry.context,
            entry.path.display()
        ),
        Ok(false) => format!(
            "nothing of context {} in {}",
            entry.context,
            entry.path.display()
        ),
        Err(e) => format!("cannot read {}: {e:#}", entry.path.display()),
    };
    same_line(hosts, &line)
}

/// Remove the context after the first server's reset (a local file, no host); when the first
/// server was not reset, the context stays and a note says so.
pub(super) fn remove_context<'a>(cx: &'a mut ResetRun, _: &'a [HostId]) -> Applied<'a> {
    Box::pin(async move {
        let entry = cx.options.kubeconfig.clone();
        if !cx.first_reset() {
            let first = cx.core.first_name().to_owned();
            cx.core.message(format!(
                "first server {first} was not reset: context {} left in {}",
                entry.context,
                entry.path.display()
            ));
            return Ok(Flow::Continue);
        }
        match remove_kubeconfig(&entry) {
            Ok(text) => cx.kubeconfig = Some(text),
            Err(e) => {
                cx.kubeconfig_failed = true;
                cx.core.message(format!("kubeconfig: {e:#}"));
            }
        }
        Ok(Flow::Continue)
    })
}
