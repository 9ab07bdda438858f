//! `edgeops upgrade`: a rolling k3s upgrade over one fleet, as an ordered list of phases on the
//! run engine. Read this file for what it does, in order:
//!
//! 1. `first server` - without it (the lock and the API live there) nothing is attempted;
//! 2. `lock` - the cluster lock `up` and `reset` take;
//! 3. `facts` - every host's facts; 4. `nodes` - the node list;
//! 5. `resolve` - the target, once (`--version`, or `--channel` at the inventory's channel_url);
//! 6. `decide` - per host: upgrade, already there, not installed, refused; the refusals that
//!    stop the run before any change (downgrade, agents past a server left out, quorum);
//! 7. `minor steps` - servers go up one minor at a time;
//! 8. `artifacts` - air-gapped clusters: the release fetched and verified on the workstation;
//! 9. `servers` - the first server, then the others one at a time (a failure stops the roll);
//! 10. `agents` - `--batch-size` at a time; 11. `verify` - the node table;
//!
//! and, whatever happened (an error, Ctrl-C), the lock released. Each node's upgrade (drain,
//! air-gap delivery, install at the target, wait Ready at the target, uncordon) is in `node`.
//! `--dry-run` runs the read-only phases and reports the plan of the others (the engine's
//! dry-run gate): nothing on a host is changed, not even the lock.
//!
//! - `options`: what is asked, and the typed refusals; `state`: the run state and the report;
//! - `prepare`: the phases before the roll; `roll`: servers, agents, the node table;
//! - `node`: one node's upgrade and its limits; `plan`: the pure per-host decisions and order.

mod node;
mod options;
pub mod plan;
mod prepare;
mod roll;
mod state;
#[cfg(test)]
mod tests;

use crate::engine::{Engine, Manager, Step, same_line};
use crate::inventory::{Host, Inventory};
use crate::phases::run_core::{RunCore, inventory_hosts, run_phases};
use crate::phases::steps::{every_host, first};

use prepare::{
    airgapped_to_upgrade, check_minor_steps, decide_each, fetch_artifacts, first_if_unreachable,
    gather_facts, nodes_before, plan_artifacts, resolve, servers_to_upgrade, stop_without_first,
    take_lock, with_facts,
};
use roll::{
    agents_pending, nodes_after, plan_agents, plan_servers, roll_agents, roll_servers,
    servers_pending,
};

pub use crate::phases::steps::POLL_EVERY;
pub use node::DRAIN_GRACE;
pub use options::{Target, UpgradeError, UpgradeOptions};
pub use prepare::CHANNEL_TIMEOUT;
pub use state::{Upgrade, UpgradeHost, UpgradeReport};

/// The phases of `edgeops upgrade`, in order.
fn phases(dry_run: bool) -> Manager<'static, Upgrade> {
    Manager::new(dry_run)
        .then(Step::reads(
            "first server",
            first_if_unreachable,
            stop_without_first,
        ))
        .then(
            Step::writes("lock", first, take_lock)
                .planned(|_, h| same_line(h, "take the cluster lock")),
        )
        .then(Step::reads("facts", every_host, gather_facts))
        .then(Step::reads("nodes", first, nodes_before))
        .then(Step::reads("resolve", first, resolve))
        .then(Step::reads("decide", with_facts, decide_each))
        .then(Step::reads(
            "minor steps",
            servers_to_upgrade,
            check_minor_steps,
        ))
        .then(
            Step::writes("artifacts", airgapped_to_upgrade, fetch_artifacts)
                .planned(plan_artifacts),
        )
        .then(Step::writes("servers", servers_pending, roll_servers).planned(plan_servers))
        .then(Step::writes("agents", agents_pending, roll_agents).planned(plan_agents))
        .then(Step::reads("verify", first, nodes_after))
}

/// Run `edgeops upgrade` over `engine`, connected to `hosts` (the selection plus the first
/// server; scripted ones in tests): the phases, then the lock given back and the sessions
/// closed, whatever happened.
pub async fn run(
    engine: Engine,
    inventory: &Inventory,
    hosts: &[Host],
    options: UpgradeOptions,
) -> anyhow::Result<UpgradeReport> {
    let mut cx = run_state(engine, inventory, hosts, options)?;
    let phases = phases(cx.options.dry_run);
    let result = run_phases(&mut cx, &phases).await;
    cx.core.finish().await;
    result?;
    Ok(cx.report())
}

/// The run state before the first phase: each host of the engine with its inventory entry.
fn run_state(
    engine: Engine,
    inventory: &Inventory,
    hosts: &[Host],
    options: UpgradeOptions,
) -> anyhow::Result<Upgrade> {
    let core = RunCore::new(engine, inventory, "upgrade")?;
    let hosts = inventory_hosts(&core.engine, hosts)?.map(|_, host| state::HostState {
        selected: options.selected.contains(&host.name),
        host: host.clone(),
        facts: None,
        need: None,
        spec: None,
        end: None,
        spent: std::time::Duration::ZERO,
    });
    Ok(Upgrade {
        core,
        inventory: inventory.clone(),
        hosts,
        observed: Err("not read".into()),
        target: None,
        target_source: None,
        artifacts: None,
        nodes: Vec::new(),
        options,
    })
}
