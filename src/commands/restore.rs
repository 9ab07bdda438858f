//! `edgeops restore INVENTORY SNAPSHOT [--yes] [--dry-run]`: check the snapshot against its
//! folder's manifest (sha256, cluster) before any host is contacted, connect, take the cluster
//! lock, show the plan (which host does what), ask on a terminal as `reset` does (refuse without
//! one unless `--yes`), then restore (`phases::restore`) and report per host.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{GlobalArgs, RestoreArgs};
use crate::engine::PhaseResult;
use crate::engine::runlog::RunLog;
use crate::exit::Failure;
use crate::k3s::snapshot::{self, Manifest};
use crate::phases::restore::{Restore, RestoreOptions, RestoreReport, Snapshot};

use super::run_setup::{prepare, with_interrupt};
use super::run_tables::table;

pub fn run(global: &GlobalArgs, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    // Everything that can be refused offline is refused before any host is contacted.
    let (bytes, entry) =
        snapshot::verify(&args.snapshot).map_err(|e| Failure::Usage(e.to_string()))?;
    let interactive = std::io::stdin().is_terminal();
    if !args.yes && !args.dry_run && !interactive {
        return Err(Failure::Usage(
            "refusing to restore without confirmation: stdin is not a terminal, so edgeops \
             cannot ask; pass --yes to restore non-interactively (nothing was changed)"
                .to_owned(),
        )
        .into());
    }
    let prepared = prepare(global, &args.inventory, true)?;
    let inventory = &prepared.inventory;
    let dir = args.snapshot.parent().unwrap_or(std::path::Path::new("."));
    let manifest = Manifest::load(dir).map_err(|e| Failure::Usage(e.to_string()))?;
    if !manifest.cluster.is_empty() && manifest.cluster != inventory.cluster.name {
        return Err(Failure::Usage(format!(
            "{} is a snapshot of cluster {} (its manifest says so), not of {}: refusing to \
             restore it here (nothing was changed)",
            args.snapshot.display(),
            manifest.cluster,
            inventory.cluster.name
        ))
        .into());
    }
    if !inventory.cluster.ha {
        return Err(Failure::Usage(format!(
            "cluster {} keeps its state in sqlite (`ha` is not set): k3s restores etcd snapshots \
             only into embedded etcd (nothing was changed)",
            inventory.cluster.name
        ))
        .into());
    }
    let redactor = super::run_setup::token_redactor(inventory);
    let log = RunLog::create(&inventory.cluster.name, redactor);
    let options = RestoreOptions {
        api_timeout: args.api_timeout,
        ready_timeout: args.ready_timeout,
    };
    let runtime = super::runtime()?;
    let restore = runtime.block_on(with_interrupt(&prepared.ctx, async {
        let engine = prepared.connect(log, Arc::new(crate::phases::Quiet)).await;
        Restore::start(engine, inventory, options).await
    }))?;
    if prepared.ctx.cancel.is_cancelled() {
        runtime.block_on(restore.abort());
        return Err(Failure::Usage("restore interrupted: nothing was changed".to_owned()).into());
    }
    print_plan(&restore, &entry.file, &entry.sha256)?;
    let problems = restore.problems();
    if !problems.is_empty() {
        runtime.block_on(restore.abort());
        return Err(Failure::Usage(format!(
            "cannot restore: {} (nothing was changed)",
            problems.join("; ")
        ))
        .into());
    }
    let snapshot = Snapshot {
        file: entry.file.clone(),
        sha256: entry.sha256.clone(),
        bytes,
    };
    if args.dry_run {
        let phases = runtime.block_on(with_interrupt(&prepared.ctx, restore.dry_run(snapshot)));
        let mut err = std::io::stderr().lock();
        for record in &phases {
            match &record.result {
                PhaseResult::Planned(lines) => {
                    for (host, line) in lines {
                        writeln!(err, "would: {}: {host}: {line}", record.phase)?;
                    }
                }
                PhaseResult::NotReached(why) => {
                    return Err(Failure::Usage(format!(
                        "restore --dry-run: the restore would stop at {}: {why} (nothing was \
                         changed)",
                        record.phase
                    ))
                    .into());
                }
                PhaseResult::Applied | PhaseResult::NothingToDo => {}
            }
        }
        eprintln!("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm(&runtime, restore.plan().len())? {
        runtime.block_on(restore.abort());
        return Err(Failure::Usage("restore cancelled: nothing was changed".to_owned()).into());
    }
    let report = runtime.block_on(with_interrupt(&prepared.ctx, restore.execute(snapshot)));
    print_report(global, &report)?;
    super::reports::hosts_failed(report.failed_hosts(), report.hosts.len())?;
    Ok(ExitCode::SUCCESS)
}

/// Which host does what, in order, on stderr (stdout keeps the report).
fn print_plan(restore: &Restore, file: &str, sha256: &str) -> anyhow::Result<()> {
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "restore plan: snapshot {file} (sha256 {sha256} matches the manifest); the cluster's \
         current state is replaced by the snapshot's"
    )?;
    let mut rows = vec![
        ["HOST", "PHASE", "ROLE", "K3S", "WILL"]
            .map(String::from)
            .to_vec(),
    ];
    for p in restore.plan() {
        rows.push(vec![
            p.host.clone(),
            p.phase.to_owned(),
            p.role.to_owned(),
            match (&p.problem, p.active) {
                (Some(_), _) => "?".to_owned(),
                (None, true) => "running".to_owned(),
                (None, false) => "stopped".to_owned(),
            },
            match &p.problem {
                Some(why) => format!("cannot: {why}"),
                None => p.action.to_owned(),
            },
        ]);
    }
    write!(err, "{}", table(&rows))?;
    Ok(())
}

/// Ask on the terminal; only `y` or `yes` goes ahead (as `reset` asks).
fn confirm(runtime: &tokio::runtime::Runtime, hosts: usize) -> anyhow::Result<bool> {
    super::prompt::confirm_or_interrupted(
        runtime,
        &format!(
            "Restore {hosts} host(s) from this snapshot? Everything changed in the cluster since \
             the snapshot is lost. [y/N] "
        ),
    )
}

fn print_report(global: &GlobalArgs, report: &RestoreReport) -> anyhow::Result<()> {
    super::reports::print(global, report, report_text)
}

fn report_text(report: &RestoreReport) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    writeln!(
        out,
        "cluster {}: restore from {}",
        report.cluster, report.snapshot
    )?;
    let mut rows = vec![
        ["HOST", "ROLE", "RESULT", "TIME", "DETAIL"]
            .map(String::from)
            .to_vec(),
    ];
    for h in &report.hosts {
        rows.push(vec![
            h.host.clone(),
            h.role.to_owned(),
            h.result_text(),
            format!("{:.1}s", h.seconds),
            h.detail.clone(),
        ]);
    }
    write!(out, "{}", table(&rows))?;
    for m in &report.messages {
        writeln!(out, "note: {m}")?;
    }
    if let Some(dir) = &report.log_dir {
        writeln!(out, "logs: {dir}")?;
    }
    writeln!(
        out,
        "{} host(s): {} restored, {} failed",
        report.hosts.len(),
        report.hosts.len() - report.failed_hosts(),
        report.failed_hosts()
    )?;
    Ok(out)
}
