//! The phases of a replacement, all on the first server: the cluster lock, the node list read
//! and decided, the old Node deleted.

use crate::engine::{Applied, Flow, HostId, Output, last_lines};
use crate::k3s::nodes;
use crate::k3s::remote::NODES_COMMAND;
use crate::k3s::uninstall as scripts;
use crate::ssh::ExecRequest;

use super::{API_TIMEOUT, ReplaceRun, decide};

/// The cluster lock, as `up` and `reset` take it: a held one refuses the replacement naming its
/// holder. An unreachable first server refuses it too: the cluster cannot be asked.
pub(super) fn lock<'b>(cx: &'b mut ReplaceRun, _: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        if cx.core.engine.unreachable(cx.core.first).is_some() {
            anyhow::bail!(
                "first server {} is unreachable: the cluster cannot be asked about {} \
             (nothing was changed)",
                cx.core.first_name(),
                cx.old_node
            );
        }
        // Not `steps::take_lock`: the CLI prints the notes with its plan, right after this
        // survey, so a stale lock taken over is kept, not also shown live (it would show twice).
        if let Some(note) = cx.core.lock.acquire(&cx.core.engine).await? {
            cx.core.messages.push(note);
        }
        Ok(Flow::Continue)
    })
}

/// The node list, and what it means for the old node ([`decide`]).
pub(super) fn read_nodes<'b>(cx: &'b mut ReplaceRun, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let request = ExecRequest::new(NODES_COMMAND)
            .sudo(true)
            .timeout(API_TIMEOUT);
        let engine = &cx.core.engine;
        let read = engine
            .each("nodes", hosts, |id| {
                engine.run(id, "reading the node list", &request, Output::Logged)
            })
            .await
            .pop()
            .map(|(_, r)| r);
        let first = cx.core.first_name().to_owned();
        cx.decision = Some(match read {
            Some(Ok(out)) => nodes::parse_nodes(&out.stdout_lossy())
                .map_err(|e| format!("{first}: {e}"))
                .and_then(|list| {
                    decide(&list, &cx.old_node, &cx.first_node).map_err(|e| e.to_string())
                }),
            Some(Err(failure)) => Err(format!("{first}: {failure}")),
            None => Err(format!("{first}: the node list was not read")),
        });
        Ok(Flow::Continue)
    })
}

/// The old Node deleted through the first server (k3s removes a server's etcd member with it).
pub(super) fn delete_node<'b>(cx: &'b mut ReplaceRun, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let old = cx.old_node.clone();
        let request = ExecRequest::new(scripts::delete_nodes_script(std::slice::from_ref(&old)))
            .sudo(true)
            .timeout(API_TIMEOUT);
        let engine = &cx.core.engine;
        let result = engine
            .each("delete node", hosts, |id| {
                engine.exec(id, "delete node", &request, Output::Logged)
            })
            .await
            .pop()
            .map(|(_, r)| r);
        let first = cx.core.first_name().to_owned();
        let failed = match result {
            Some(Ok(out)) => {
                let (_, _, failed) = scripts::parse_deleted(&out.stdout_lossy());
                (!out.success() || !failed.is_empty()).then(|| {
                    format!(
                        "{first}: could not delete node {old} ({}): {}",
                        out.exit,
                        last_lines(&String::from_utf8_lossy(&out.stderr), 3)
                    )
                })
            }
            Some(Err(failure)) => Some(format!("{first}: deleting node {old}: {failure}")),
            None => Some(format!("{first}: node {old} was not deleted")),
        };
        Ok(match failed {
            Some(why) => {
                cx.delete_failed = Some(why.clone());
                Flow::Stop(why)
            }
            None => Flow::Continue,
        })
    })
}
