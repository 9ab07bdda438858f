//! The roll: the first server, then the other servers one at a time (a failed server stops
//! it: the later servers and every agent are skipped, saying why), then the agents
//! `--batch-size` at a time (a failed agent does not stop the others); at the end the node
//! table. Every fan-out goes through `Engine::each_within`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::{Applied, Failure, Flow, HostId};
use crate::k3s::K3sVersion;
use crate::phases::Progress;
use crate::phases::outcome::{NodeRow, Status};
use crate::phases::steps;

use super::node::upgrade_node;
use super::plan::rolling_order;
use super::state::Upgrade;

/// The rolling order of the selected hosts: servers (first server first), agent batches.
fn order(cx: &Upgrade) -> (Vec<HostId>, Vec<Vec<HostId>>) {
    let selected: Vec<_> = cx.selected().map(|(_, s)| &s.host).collect();
    let first = cx.hosts[cx.core.first].host.name.clone();
    let (servers, batches) = rolling_order(selected, &first, cx.options.batch_size);
    let id = |name: &String| cx.core.engine.id_of(name);
    (
        servers.iter().filter_map(id).collect(),
        batches
            .iter()
            .map(|b| b.iter().filter_map(id).collect())
            .collect(),
    )
}

/// The first server of the roll that failed (before the roll or in it), if any.
fn failed_server(cx: &Upgrade) -> Option<HostId> {
    order(cx).0.into_iter().find(|&id| cx.hosts[id].failed())
}

/// Upgrade `id` as part of `phase` (the observer shows it at work), timing it for the report.
async fn timed(
    cx: &Upgrade,
    phase: &str,
    id: HostId,
    target: &K3sVersion,
    spent: &Mutex<Vec<(HostId, Duration)>>,
) -> Result<(), Failure> {
    cx.core.engine.observer().event(&Progress::HostStart {
        phase,
        host: cx.core.engine.name(id),
    });
    let started = Instant::now();
    let result = upgrade_node(cx, id, target).await;
    spent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, started.elapsed()));
    result
}

/// One server of the roll: skipped when a server before it failed (before the roll or in
/// it), else upgraded; a failure stops the servers after it.
async fn server_step(
    cx: &Upgrade,
    id: HostId,
    servers: &[HostId],
    failed: &Mutex<Option<HostId>>,
    spent: &Mutex<Vec<(HostId, Duration)>>,
    target: &K3sVersion,
) -> Result<(), Failure> {
    let earlier = servers
        .iter()
        .take_while(|&&s| s != id)
        .find(|&&s| cx.hosts[s].failed())
        .copied();
    let prev = *failed.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(prev) = prev.or(earlier) {
        return Err(Failure::skipped(format!(
            "server {} failed; servers go one at a time, so this one was not attempted",
            cx.hosts[prev].host.name
        )));
    }
    let result = timed(cx, "servers", id, target, spent).await;
    if result.is_err() {
        *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
    }
    result
}

/// Record how each host's upgrade ended.
fn record(
    cx: &mut Upgrade,
    results: Vec<(HostId, Result<(), Failure>)>,
    spent: Mutex<Vec<(HostId, Duration)>>,
    target: &K3sVersion,
) {
    for (id, took) in spent.into_inner().unwrap_or_else(|e| e.into_inner()) {
        cx.hosts[id].spent += took;
    }
    for (id, result) in results {
        let state = &mut cx.hosts[id];
        match result {
            Ok(()) => {
                let word = match state.need.as_ref().and_then(|n| n.from.as_ref()) {
                    Some(from) if from > target => "downgraded",
                    _ => "upgraded",
                };
                state.finish(Status::Done, word, None);
            }
            Err(failure) if failure.kind == crate::engine::FailureKind::Skipped => {
                state.skip(failure.reason)
            }
            Err(failure) => state.fail(failure),
        }
    }
}

/// The servers to upgrade, in rolling order.
pub(super) fn servers_pending(cx: &Upgrade) -> Vec<HostId> {
    order(cx)
        .0
        .into_iter()
        .filter(|&id| cx.hosts[id].pending())
        .collect()
}

pub(super) fn plan_servers(cx: &mut Upgrade, hosts: &[HostId]) -> Vec<(HostId, String)> {
    let lines = planned(cx, hosts, |i, n| {
        format!("server {} of {n}, one at a time", i + 1)
    });
    record_plan(cx, &lines);
    lines
}

/// The servers, one at a time.
pub(super) fn roll_servers<'b>(cx: &'b mut Upgrade, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let target = cx.target()?;
        // A server that failed before the roll (unreachable, refused) counts as failed
        // already: the servers after it would upgrade with one member down.
        let servers = order(cx).0;
        let failed: Mutex<Option<HostId>> = Mutex::new(None);
        let spent = Mutex::new(Vec::new());
        let results = {
            let cx = &*cx;
            let (servers, failed, spent, target) = (&servers, &failed, &spent, &target);
            cx.core
                .engine
                .each_within("servers", hosts, 1, |id| {
                    server_step(cx, id, servers, failed, spent, target)
                })
                .await
        };
        record(cx, results, spent, &target);
        Ok(Flow::Continue)
    })
}

/// The agents to upgrade, in rolling order.
pub(super) fn agents_pending(cx: &Upgrade) -> Vec<HostId> {
    order(cx)
        .1
        .into_iter()
        .flatten()
        .filter(|&id| cx.hosts[id].pending())
        .collect()
}

pub(super) fn plan_agents(cx: &mut Upgrade, hosts: &[HostId]) -> Vec<(HostId, String)> {
    let batches = batches(cx, hosts);
    let count = batches.len();
    let mut lines = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        lines.extend(planned(cx, batch, |_, _| {
            format!("agents batch {} of {count}", i + 1)
        }));
    }
    record_plan(cx, &lines);
    lines
}

/// The agents, `--batch-size` at a time; none when a server failed (they must not run newer
/// than the servers).
pub(super) fn roll_agents<'b>(cx: &'b mut Upgrade, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        if let Some(prev) = failed_server(cx) {
            let name = cx.hosts[prev].host.name.clone();
            cx.message(format!(
                "server {name} failed: the later servers and all agents were not attempted"
            ));
            for &id in hosts {
                cx.hosts[id].skip(format!(
                    "server {name} failed; agents go after every server, so this one was not attempted"
                ));
            }
            return Ok(Flow::Continue);
        }
        let target = cx.target()?;
        let count = batches(cx, hosts).len();
        for (i, batch) in batches(cx, hosts).into_iter().enumerate() {
            let spent = Mutex::new(Vec::new());
            let title = if count == 1 {
                "agents".to_owned()
            } else {
                format!("agents {}/{count}", i + 1)
            };
            let results = {
                let cx = &*cx;
                let (spent, target) = (&spent, &target);
                cx.core
                    .engine
                    .each_within(&title, &batch, cx.options.batch_size, |id| {
                        timed(cx, &title, id, target, spent)
                    })
                    .await
            };
            record(cx, results, spent, &target);
        }
        Ok(Flow::Continue)
    })
}

/// `hosts` (agents) in the rolling order's batches.
fn batches(cx: &Upgrade, hosts: &[HostId]) -> Vec<Vec<HostId>> {
    order(cx)
        .1
        .into_iter()
        .map(|b| {
            b.into_iter()
                .filter(|id| hosts.contains(id))
                .collect::<Vec<_>>()
        })
        .filter(|b| !b.is_empty())
        .collect()
}

/// Plan lines `from -> to (where in the order)` for `hosts`.
fn planned(
    cx: &Upgrade,
    hosts: &[HostId],
    place: impl Fn(usize, usize) -> String,
) -> Vec<(HostId, String)> {
    let target = cx.target_text();
    hosts
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let from = cx.hosts[id]
                .need
                .as_ref()
                .and_then(|n| n.from.as_ref())
                .map_or_else(|| "-".to_owned(), ToString::to_string);
            (
                id,
                format!("{from} -> {target} ({})", place(i, hosts.len())),
            )
        })
        .collect()
}

/// A dry run's hosts end as planned, with the plan line as their result.
fn record_plan(cx: &mut Upgrade, lines: &[(HostId, String)]) {
    for (id, line) in lines {
        cx.hosts[*id].finish(Status::Planned, format!("would upgrade {line}"), None);
    }
}

/// After the roll: the pinned-version reminder and the node table.
pub(super) fn nodes_after<'b>(cx: &'b mut Upgrade, _: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let target = cx.target()?;
        if let Some(pinned) = &cx.inventory.cluster.version
            && *pinned != target.to_string()
            && !cx.options.dry_run
        {
            cx.message(format!(
                "the inventory pins version = \"{pinned}\": set it to \"{target}\" so `edgeops up` keeps this version"
            ));
        }
        if let Ok(Ok(observed)) = steps::read_nodes(&cx.core, "nodes").await {
            cx.nodes = observed
                .iter()
                .map(|n| NodeRow::from_status(n, Vec::new()))
                .collect();
        }
        Ok(Flow::Continue)
    })
}
