//! `edgeops backup INVENTORY [--name N] [--dest DIR] [--list] [--prune KEEP]`: an etcd snapshot
//! taken on the first server with k3s's own command, copied to the workstation (0600, folder
//! 0700, sha256 in `manifest.json`); or the snapshots listed (here, checked against the
//! manifest, and on the server); old ones pruned in both places. The work is in
//! `phases::backup` (on the run engine); sqlite clusters are refused offline with the reason.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use std::sync::Arc;

use crate::cli::{BackupArgs, GlobalArgs, OutputFormat};
use crate::engine::Engine;
use crate::engine::FailureKind;
use crate::engine::runlog::RunLog;
use crate::exit::Failure;
use crate::k3s::install::first_server;
use crate::k3s::snapshot::{self, Listed, Manifest};
use crate::phases::Quiet;
use crate::phases::backup::{self, Backup, Request};

use super::run_setup::{prepare, with_interrupt};
use super::run_tables::table;

/// Where backups go without `--dest`: `backups/CLUSTER` next to the inventory.
pub fn default_dest(inventory: &Path, cluster: &str) -> PathBuf {
    inventory
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("backups")
        .join(cluster)
}

#[derive(Serialize)]
struct LocalRow {
    file: String,
    sha256: String,
    size: u64,
    host: String,
    fetched: u64,
    /// `ok`, `missing` or `changed` (the file's sha256 differs from the manifest's).
    check: &'static str,
}

#[derive(Serialize)]
struct Report {
    cluster: String,
    dest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved: Option<backup::Saved>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local: Option<Vec<LocalRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<Vec<Listed>>,
    pruned_local: Vec<String>,
    pruned_server: Vec<String>,
    notes: Vec<String>,
    /// Why the first server's step failed: unreachable, timed_out, exited, refused, cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<FailureKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

pub fn run(global: &GlobalArgs, args: &BackupArgs) -> anyhow::Result<ExitCode> {
    snapshot::check_name(&args.name).map_err(|e| Failure::Usage(e.to_string()))?;
    let prepared = prepare(global, &args.inventory, true)?;
    let inventory = &prepared.inventory;
    let cluster = inventory.cluster.name.clone();
    let first = first_server(inventory)
        .map_err(|e| Failure::Usage(e.to_string()))?
        .name
        .clone();
    let dest = args
        .dest
        .clone()
        .unwrap_or_else(|| default_dest(&args.inventory, &cluster));
    if !inventory.cluster.ha && !args.list {
        return Err(Failure::Usage(format!(
            "cluster {cluster} keeps its state in sqlite (one server, `ha` is not set), and k3s \
             can snapshot only embedded etcd (`k3s etcd-snapshot` answers `etcd datastore \
             disabled`). edgeops backs up etcd clusters (`ha = true`, 3+ servers) only; for this \
             one stop k3s on {first} and copy /var/lib/rancher/k3s/server/db/state.db* and \
             /var/lib/rancher/k3s/server/token somewhere safe (nothing was changed)"
        ))
        .into());
    }
    let targets: Vec<_> = prepared
        .targets
        .iter()
        .filter(|t| t.name == first)
        .cloned()
        .collect();
    let runtime = super::runtime()?;
    let mut report = Report {
        cluster: cluster.clone(),
        dest: dest.display().to_string(),
        saved: None,
        local: None,
        server: None,
        pruned_local: vec![],
        pruned_server: vec![],
        notes: vec![],
        failure: None,
        exit_code: None,
        reason: None,
    };
    let redactor = super::run_setup::token_redactor(inventory);
    let request = if args.list {
        report.local = Some(local_rows(&dest)?);
        Request::List
    } else {
        Request::Save {
            name: args.name.clone(),
            prune: args.prune.map(|keep| keep as usize),
        }
    };
    let outcome = runtime.block_on(with_interrupt(&prepared.ctx, async {
        let log = RunLog::create(&cluster, redactor);
        let engine = Engine::connect(
            targets,
            prepared.ctx.clone(),
            prepared.fleet_settings.clone(),
            log,
            Arc::new(Quiet),
        )
        .await;
        Backup::run(engine, inventory, dest.clone(), request).await
    }))?;
    report.saved = outcome.saved;
    report.server = outcome.listed;
    report.pruned_local = outcome.pruned_local;
    report.pruned_server = outcome.pruned_server;
    let mut result = Ok(());
    if let Some(failure) = outcome.failure {
        let reason = format!("{first}: {}", failure.reason);
        if args.list {
            report.notes.push(format!("server snapshots: {reason}"));
        } else {
            result = Err(anyhow::anyhow!("{reason}"));
            report.failure = Some(failure.kind);
            report.exit_code = failure.exit_code;
            report.reason = Some(reason);
        }
    }
    print(global, &report)?;
    result?;
    Ok(ExitCode::SUCCESS)
}

fn local_rows(dest: &Path) -> anyhow::Result<Vec<LocalRow>> {
    let manifest = Manifest::load(dest)?;
    Ok(manifest
        .snapshots
        .iter()
        .map(|e| {
            let check = match std::fs::read(dest.join(&e.file)) {
                Ok(bytes) if snapshot::sha256_hex(&bytes) == e.sha256 => "ok",
                Ok(_) => "changed",
                Err(_) => "missing",
            };
            LocalRow {
                file: e.file.clone(),
                sha256: e.sha256.clone(),
                size: e.size,
                host: e.host.clone(),
                fetched: e.fetched,
                check,
            }
        })
        .collect())
}

fn print(global: &GlobalArgs, report: &Report) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if global.output == OutputFormat::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
        return Ok(());
    }
    if let Some(saved) = &report.saved {
        writeln!(
            out,
            "cluster {}: snapshot {} taken on {}, copied to {} ({} bytes, sha256 {})",
            report.cluster,
            saved.entry.file,
            saved.entry.host,
            saved.local,
            saved.entry.size,
            saved.entry.sha256
        )?;
    }
    if let Some(local) = &report.local {
        writeln!(out, "on this workstation ({}):", report.dest)?;
        let mut rows = vec![
            ["FILE", "SIZE", "FROM", "CHECK", "SHA256"]
                .map(String::from)
                .to_vec(),
        ];
        for r in local {
            rows.push(vec![
                r.file.clone(),
                r.size.to_string(),
                r.host.clone(),
                r.check.to_owned(),
                r.sha256.clone(),
            ]);
        }
        write!(out, "{}", table(&rows))?;
    }
    if let Some(server) = &report.server {
        writeln!(out, "on the first server:")?;
        let mut rows = vec![
            ["NAME", "SIZE", "CREATED", "PATH"]
                .map(String::from)
                .to_vec(),
        ];
        for l in server {
            rows.push(vec![
                l.name.clone(),
                l.size.to_string(),
                l.created.clone(),
                l.path.clone(),
            ]);
        }
        write!(out, "{}", table(&rows))?;
    }
    for file in &report.pruned_local {
        writeln!(out, "pruned here: {file}")?;
    }
    for file in &report.pruned_server {
        writeln!(out, "pruned on the server: {file}")?;
    }
    for note in &report.notes {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}
