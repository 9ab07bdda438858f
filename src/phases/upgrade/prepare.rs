//! The phases before the roll: nothing here changes a host except the lock. The first server
//! reachable, the cluster lock, facts, the node list, the target resolved once, each host's
//! decision with the refusals (downgrade, skew, quorum), the minor-step check, and the
//! air-gapped release fetched and verified on the workstation.

use std::collections::HashMap;

use crate::engine::{Applied, Failure, Flow, HostId};
use crate::host::facts;
use crate::k3s::install::{InstallSpec, Join};
use crate::k3s::{ChannelResolver, K3sVersion, skew};
use crate::phases::Progress;
use crate::phases::airgap;
use crate::phases::outcome::Status;
use crate::phases::steps;

use super::options::{Target, UpgradeError};
use super::plan::{HostNeed, Need, decide_upgrade, downgrades};
use super::state::Upgrade;

pub use crate::k3s::channel::CHANNEL_TIMEOUT;

/// The first server, only when it could not be reached.
pub(super) fn first_if_unreachable(cx: &Upgrade) -> Vec<HostId> {
    let first = cx.core.first;
    cx.core
        .engine
        .unreachable(first)
        .map(|_| vec![first])
        .unwrap_or_default()
}

/// The first server, where the lock and the API live: without it nothing is attempted.
pub(super) fn stop_without_first<'b>(cx: &'b mut Upgrade, _: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let first = cx.core.first;
        let name = cx.hosts[first].host.name.clone();
        let why = format!("first server {name} is unreachable: nothing was attempted");
        cx.message(why.clone());
        let cause = cx.core.engine.unreachable(first).cloned();
        for (id, state) in cx.hosts.iter_mut() {
            if !state.selected {
                continue;
            }
            if id == first {
                let mut failure = cause.clone().unwrap_or_else(|| Failure::refused(&why));
                failure.reason = why.clone();
                state.fail(failure);
            } else {
                state.skip(why.clone());
            }
        }
        Ok(Flow::Stop(why))
    })
}

/// The cluster lock `up` and `reset` take (the same file and script), on the first server.
pub(super) fn take_lock<'b>(cx: &'b mut Upgrade, _: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        steps::take_lock(&mut cx.core)
            .await
            .map_err(UpgradeError::from)?;
        Ok(Flow::Continue)
    })
}

/// Every host's facts (one read-only round trip each).
pub(super) fn gather_facts<'b>(cx: &'b mut Upgrade, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let engine = &cx.core.engine;
        let results = engine
            .each("facts", hosts, |id| facts::read(engine, id))
            .await;
        for (id, result) in results {
            match result {
                Ok(found) => cx.hosts[id].facts = Some(found),
                Err(failure) => cx.hosts[id].fail(failure),
            }
        }
        Ok(Flow::Continue)
    })
}

/// The node list before deciding: which version each node runs, which are servers.
pub(super) fn nodes_before<'b>(cx: &'b mut Upgrade, _: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        cx.observed = match steps::read_nodes(&cx.core, "nodes").await {
            Ok(read) => read.map_err(|e| format!("nodes: {e}")),
            Err(failure) => Err(failure.reason),
        };
        Ok(Flow::Continue)
    })
}

/// The target, resolved once on the workstation (`--channel` at the inventory's
/// `channel_url`, bounded by [`CHANNEL_TIMEOUT`]).
pub(super) fn resolve<'b>(cx: &'b mut Upgrade, _: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        match cx.options.target.clone() {
            Target::Version(version) => {
                cx.target = Some(version);
                cx.target_source = Some("--version".into());
            }
            Target::Channel(channel) => {
                let url = cx.inventory.cluster.channel_url.clone();
                let observer = cx.core.engine.observer().clone();
                observer.event(&Progress::PhaseStart {
                    phase: "resolve",
                    hosts: 0,
                });
                let resolved = match ChannelResolver::new(CHANNEL_TIMEOUT) {
                    Ok(resolver) => resolver.resolve(&url, &channel).await,
                    Err(e) => Err(e),
                };
                observer.event(&Progress::PhaseEnd { phase: "resolve" });
                let version = resolved.map_err(|source| UpgradeError::Resolve {
                    channel: channel.clone(),
                    source,
                })?;
                cx.target = Some(version);
                cx.target_source = Some(format!("channel {channel} at {url}"));
            }
        }
        Ok(Flow::Continue)
    })
}

/// The selected hosts whose facts were read.
pub(super) fn with_facts(cx: &Upgrade) -> Vec<HostId> {
    cx.selected_where(|s| s.facts.is_some())
}

/// Per selected host: what it needs (upgrade, already there, not installed, set up otherwise)
/// and its install at the target; then the refusals that stop the run before any change:
/// agents past a server left out, a server whose restart would lose quorum, a downgrade.
pub(super) fn decide_each<'b>(cx: &'b mut Upgrade, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let target = cx.target()?;
        decide(cx, hosts, &target)?;
        Ok(Flow::Continue)
    })
}

fn decide(cx: &mut Upgrade, hosts: &[HostId], target: &K3sVersion) -> anyhow::Result<()> {
    let nodes = match &cx.observed {
        Ok(list) => skew::node_versions(list),
        Err(reason) => {
            let text = format!(
                "cannot list the nodes on {}: {reason}",
                cx.hosts[cx.core.first].host.name
            );
            cx.message(text);
            Vec::new()
        }
    };
    let node_versions: HashMap<&str, &K3sVersion> = nodes
        .iter()
        .map(|(name, v, _)| (name.as_str(), v))
        .collect();
    let renderer = crate::render::renderer_for(&cx.inventory);
    let inventory = &cx.inventory;
    for &id in hosts {
        let state = &mut cx.hosts[id];
        let Some(facts) = state.facts.as_ref() else {
            continue;
        };
        let need = decide_upgrade(
            &state.host,
            facts,
            node_versions.get(state.host.node_name.as_str()).copied(),
            target,
        );
        let spec = match &renderer {
            Ok(renderer) => Join::for_host(inventory, &state.host)
                .and_then(|join| InstallSpec::new(inventory, &state.host, join, target, renderer))
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("templates: {e:#}")),
        };
        match (&need.need, spec) {
            (Need::Refuse(reason), _) => state.fail(Failure::refused(reason.clone())),
            (Need::NotInstalled(reason), _) => state.skip(reason.clone()),
            (Need::Already, _) => {
                state.finish(Status::Unchanged, format!("already at {target}"), None)
            }
            (Need::Upgrade, Err(reason)) => state.fail(Failure::refused(reason)),
            (Need::Upgrade, Ok(spec)) => state.spec = Some(spec),
        }
        state.need = Some(need);
    }
    if !cx.options.force {
        let in_run: Vec<String> = cx
            .selected()
            .map(|(_, s)| s.host.node_name.clone())
            .collect();
        let behind = skew::servers_left_behind(&nodes, &in_run, target);
        if !behind.is_empty() {
            return Err(UpgradeError::ServersBehind {
                target: target.clone(),
                servers: behind,
            }
            .into());
        }
    }
    if let Ok(list) = &cx.observed {
        // Each server is away while it restarts: the other members must keep quorum.
        let members = crate::k3s::quorum::Members::from_nodes(list);
        for (_, state) in cx.selected() {
            if !state.is_server() || state.spec.is_none() {
                continue;
            }
            if let Err(reason) = members.check_restart(&state.host.node_name) {
                return Err(UpgradeError::Quorum {
                    server: state.host.name.clone(),
                    reason,
                }
                .into());
            }
        }
    }
    let needs: Vec<(&str, &HostNeed)> = cx
        .selected()
        .filter_map(|(_, s)| Some((s.host.name.as_str(), s.need.as_ref()?)))
        .collect();
    let down = downgrades(needs, target);
    if !down.is_empty() {
        if !cx.options.force {
            return Err(UpgradeError::Downgrade {
                target: target.clone(),
                hosts: down,
            }
            .into());
        }
        let text = format!(
            "--force: downgrading {} to {target}",
            down.iter()
                .map(|(h, v)| format!("{h} ({v})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        cx.message(text);
    }
    Ok(())
}

/// The servers to upgrade.
pub(super) fn servers_to_upgrade(cx: &Upgrade) -> Vec<HostId> {
    cx.selected_where(|s| s.is_server() && s.spec.is_some())
}

/// Servers go up one minor at a time: a target that skips a minor line is refused, naming the
/// newest release of each line in between (from the channel server). `--force` lets it
/// through with a note.
pub(super) fn check_minor_steps<'b>(cx: &'b mut Upgrade, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let target = cx.target()?;
        let running = hosts.iter().filter_map(|&id| {
            let state = &cx.hosts[id];
            Some((state.host.name.clone(), state.need.as_ref()?.from.clone()?))
        });
        let behind = skew::skipping(running, &target);
        let url = &cx.inventory.cluster.channel_url;
        let Some((oldest, steps)) = skew::releases_between(url, &behind, &target).await else {
            return Ok(Flow::Continue);
        };
        let steps = steps.map_err(|source| UpgradeError::Resolve {
            channel: oldest.minor_channel(),
            source,
        })?;
        let text = skew::refusal(&behind, &target, &steps);
        if cx.options.force {
            cx.message(format!("--force: {text}"));
            return Ok(Flow::Continue);
        }
        Err(UpgradeError::SkipsMinor(text).into())
    })
}

/// Air-gapped clusters only: the hosts to upgrade.
pub(super) fn airgapped_to_upgrade(cx: &Upgrade) -> Vec<HostId> {
    if !cx.inventory.cluster.airgap {
        return Vec::new();
    }
    cx.hosts
        .iter()
        .filter(|(_, s)| s.pending() && s.facts.as_ref().is_some_and(|f| f.arch.is_some()))
        .map(|(id, _)| id)
        .collect()
}

pub(super) fn plan_artifacts(cx: &mut Upgrade, hosts: &[HostId]) -> Vec<(HostId, String)> {
    let target = cx.target_text();
    hosts
        .iter()
        .map(|&h| {
            let arch = cx.hosts[h]
                .facts
                .as_ref()
                .and_then(|f| f.arch)
                .map(|a| a.to_string())
                .unwrap_or_default();
            (
                h,
                format!("fetch and verify k3s {target} for {arch} on the workstation"),
            )
        })
        .collect()
}

/// Air-gapped clusters: fetch and verify the target release once on the workstation, for the
/// architectures of the hosts to upgrade (a mismatch stops the run before any change).
pub(super) fn fetch_artifacts<'b>(cx: &'b mut Upgrade, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let target = cx.target()?;
        let arches: Vec<_> = hosts
            .iter()
            .filter_map(|&id| cx.hosts[id].facts.as_ref().and_then(|f| f.arch))
            .collect();
        let cluster = &cx.inventory.cluster;
        let artifacts = airgap::fetch_release(&mut cx.core, cluster, &target, arches).await?;
        cx.artifacts = Some(artifacts);
        Ok(Flow::Continue)
    })
}
