//! Fleet runs: `up`, `plan`, `status`, `upgrade` and `check` over several site inventories in one
//! command. A layer above the per-cluster run: each cluster is prepared and run by the same
//! entry points as a single-inventory command (its own lock, phases, order, run log and
//! report), all clusters at once in one runtime, their hosts sharing one connection budget
//! (`FleetSettings::shared_budget`). One cluster's failure never stops another; a summary per
//! cluster (text or JSON) ends the run and the exit code says whether any cluster failed.

mod observer;
mod summary;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use crate::cli::{GlobalArgs, InventoryArg, OutputFormat, UpArgs, UpgradeArgs};
use crate::commands::run_setup::{Prepared, prepare};
use crate::commands::runs::{self, Setup, Work};
use crate::exit::Failure;
use crate::ssh::Cancel;

pub use summary::{ClusterOutcome, FleetReport};

/// Does this command line name a fleet (several inventories, a folder or a pattern) rather
/// than one inventory file?
pub fn is_fleet(first: &Path, more: &[PathBuf]) -> bool {
    !more.is_empty() || first.is_dir() || first.to_string_lossy().contains(['*', '?', '['])
}

/// `edgeops up A.toml B.toml ...` / `edgeops up sites/`.
pub fn up(global: &GlobalArgs, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let work = Work::up(args);
    run(global, work, &inputs(&args.inventory, &args.more))
}

/// `edgeops plan A.toml B.toml ...`.
pub fn plan(global: &GlobalArgs, args: &InventoryArg) -> anyhow::Result<ExitCode> {
    let work = Work::plan();
    run(global, work, &inputs(&args.inventory, &args.more))
}

/// `edgeops status A.toml B.toml ...`.
pub fn status(global: &GlobalArgs, args: &InventoryArg) -> anyhow::Result<ExitCode> {
    run(global, Work::Status, &inputs(&args.inventory, &args.more))
}

/// `edgeops upgrade A.toml B.toml ... --version V`: one target for every cluster. A cluster
/// that would go down a version (without `--force`) fails alone, nothing changed on it.
pub fn upgrade(global: &GlobalArgs, args: &UpgradeArgs) -> anyhow::Result<ExitCode> {
    let work = Work::upgrade(args)?;
    run(global, work, &inputs(&args.inventory, &args.more))
}

/// `edgeops check A.toml B.toml ...`: each inventory checked offline and summarised as a
/// single `check` does; every bad one is reported (exit 2 if any).
pub fn check(global: &GlobalArgs, args: &InventoryArg) -> anyhow::Result<ExitCode> {
    let files = expand(&inputs(&args.inventory, &args.more))?;
    let mut bad = 0;
    for file in &files {
        let one = InventoryArg {
            inventory: file.clone(),
            more: Vec::new(),
        };
        if let Err(e) = crate::commands::check::run(global, &one) {
            bad += 1;
            eprintln!("error: {e:#}");
        }
    }
    if bad > 0 {
        return Err(Failure::Usage(format!(
            "{bad} of {} inventories have problems (shown above)",
            files.len()
        ))
        .into());
    }
    if !global.quiet && global.output == OutputFormat::Text {
        eprintln!("{} inventories: all valid", files.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn inputs(first: &Path, more: &[PathBuf]) -> Vec<String> {
    std::iter::once(first)
        .chain(more.iter().map(PathBuf::as_path))
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

fn expand(inputs: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    Ok(crate::sites::expand(inputs).map_err(|e| Failure::Usage(e.to_string()))?)
}

/// One cluster, ready to run: its hosts and SSH state, and its command's options.
struct Cluster {
    path: PathBuf,
    prepared: Prepared,
    setup: Setup,
}

fn run(global: &GlobalArgs, work: Work<'_>, inputs: &[String]) -> anyhow::Result<ExitCode> {
    if global.limit.is_some() {
        return Err(Failure::Usage(
            "--limit selects hosts of one inventory: give a single inventory with it".into(),
        )
        .into());
    }
    let files = expand(inputs)?;
    let clusters = prepare_all(global, &work, &files)?;
    // One budget for every cluster's connections and steps: `--concurrency`, else the
    // largest `[ssh] concurrency` of the inventories.
    let budget = global.concurrency.unwrap_or_else(|| {
        clusters
            .iter()
            .map(|c| c.prepared.inventory.concurrency)
            .max()
            .unwrap_or(1)
    });
    let budget = budget.max(1);
    let shared = Arc::new(tokio::sync::Semaphore::new(budget));
    let show_progress = !global.quiet && global.output == OutputFormat::Text;
    let started = Instant::now();
    let runtime = crate::commands::runtime()?;
    let cancels: Vec<Cancel> = clusters
        .iter()
        .map(|c| c.prepared.ctx.cancel.clone())
        .collect();
    let outcomes = runtime.block_on(async {
        // SIGINT, SIGTERM and SIGHUP as for one cluster: the first cancels every cluster's run
        // (each releases its own lock), a second exits at once.
        let interrupt = crate::commands::interrupt::spawn_watch_all(cancels);
        let runs = clusters.into_iter().map(|cluster| {
            let shared = shared.clone();
            async move { run_cluster(cluster, shared, show_progress).await }
        });
        let outcomes = futures::future::join_all(runs).await;
        interrupt.abort();
        outcomes
    });
    let report = FleetReport::new(outcomes, budget, started.elapsed());
    report.print(global, |global, run| runs::print(global, &work, run))?;
    let failed = report.failed_clusters();
    if failed == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow::anyhow!(
            "{failed} of {} clusters failed (see the summary)",
            report.clusters.len()
        ))
    }
}

/// Read and check every inventory and its secrets before any host is touched; every bad one
/// is reported, then the run stops with exit 2.
fn prepare_all(
    global: &GlobalArgs,
    work: &Work<'_>,
    files: &[PathBuf],
) -> anyhow::Result<Vec<Cluster>> {
    let need_sudo = work.needs_sudo();
    let mut clusters: Vec<Cluster> = Vec::new();
    let mut bad = 0;
    for path in files {
        let prepared = prepare(global, path, need_sudo).and_then(|prepared| {
            let setup = work.setup(global, &prepared)?;
            Ok((prepared, setup))
        });
        match prepared {
            Ok((prepared, setup)) => {
                let name = &prepared.inventory.cluster.name;
                if let Some(other) = clusters
                    .iter()
                    .find(|c| &c.prepared.inventory.cluster.name == name)
                {
                    bad += 1;
                    eprintln!(
                        "error: {}: cluster `{name}` is also the cluster of {}: each site needs its own name (it names the lock's holder, run logs and kubeconfig context)",
                        path.display(),
                        other.path.display()
                    );
                    continue;
                }
                clusters.push(Cluster {
                    path: path.clone(),
                    prepared,
                    setup,
                });
            }
            Err(e) => {
                bad += 1;
                // Inventory errors name their file; other bad input gets it here.
                if e.downcast_ref::<crate::inventory::InventoryError>()
                    .is_some()
                {
                    eprintln!("error: {e:#}");
                } else {
                    eprintln!("error: {}: {e:#}", path.display());
                }
            }
        }
    }
    if bad > 0 {
        return Err(Failure::Usage(format!(
            "{bad} of {} inventories are not usable (shown above); no host was touched",
            files.len()
        ))
        .into());
    }
    Ok(clusters)
}

/// One cluster's run, from the same entry points as the single-inventory commands.
async fn run_cluster(
    cluster: Cluster,
    shared: Arc<tokio::sync::Semaphore>,
    show_progress: bool,
) -> ClusterOutcome {
    let Cluster {
        path,
        prepared,
        setup,
    } = cluster;
    let name = prepared.inventory.cluster.name.clone();
    let observer = observer::ClusterLines::shared(&name, show_progress);
    let mut fleet = prepared.fleet_settings.clone();
    fleet.shared_budget = Some(shared);
    let started = Instant::now();
    let result = runs::run_cluster(&prepared, setup, fleet, observer).await;
    ClusterOutcome::new(name, path, result, started.elapsed())
}
