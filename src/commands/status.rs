//! `edgeops status INVENTORY`: facts per host (OS, arch, k3s version and service state, whether
//! edgeops's config is recorded), the cluster's node readiness table and, with `[gitlab]`, the
//! GitLab charts' state; changes nothing.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{GlobalArgs, InventoryArg, OutputFormat};
use crate::phases::{self, RunReport};

use super::run_setup::{prepare, with_interrupt};
use super::run_tables::table;

pub fn run(global: &GlobalArgs, args: &InventoryArg) -> anyhow::Result<ExitCode> {
    let prepared = prepare(global, &args.inventory, true)?;
    let view = super::run_progress(global);
    let runtime = super::runtime()?;
    let report = runtime.block_on(with_interrupt(
        &prepared.ctx,
        phases::status(
            &prepared.inventory,
            prepared.hosts.clone(),
            prepared.targets.clone(),
            prepared.ctx.clone(),
            prepared.fleet_settings.clone(),
            view.clone(),
        ),
    ));
    view.finish();
    let report = report?;
    print(global, &report)?;
    super::run_setup::outcome(&report)
}

pub fn print(global: &GlobalArgs, report: &RunReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if global.output == OutputFormat::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
        return Ok(());
    }
    let mut rows = vec![
        [
            "HOST", "ROLE", "OS", "ARCH", "MEM", "K3S", "SERVICE", "CONFIG", "PROBLEM",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for host in &report.hosts {
        let dash = || "-".to_owned();
        match &host.facts {
            Some(f) => rows.push(vec![
                host.host.clone(),
                host.role.to_owned(),
                f.os.clone(),
                host.arch.clone().unwrap_or_else(dash),
                format!("{}M", f.memory_mb),
                f.k3s_version.as_ref().map_or_else(dash, |v| v.to_string()),
                f.services
                    .iter()
                    .map(|s| format!("{} {}", s.unit, s.state))
                    .collect::<Vec<_>>()
                    .join(", "),
                if f.config_hash.is_some() {
                    "edgeops"
                } else {
                    "-"
                }
                .to_owned(),
                host.reason.clone().unwrap_or_default(),
            ]),
            None => rows.push(vec![
                host.host.clone(),
                host.role.to_owned(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                host.reason.clone().unwrap_or_default(),
            ]),
        }
    }
    write!(out, "{}", table(&rows))?;
    if !report.nodes.is_empty() {
        writeln!(out)?;
        let mut rows = vec![
            ["NODE", "STATUS", "ROLES", "VERSION", "ARCH"]
                .map(String::from)
                .to_vec(),
        ];
        for node in &report.nodes {
            rows.push(vec![
                node.name.clone(),
                node.ready.clone(),
                node.roles.clone(),
                node.version.clone(),
                node.arch.clone(),
            ]);
        }
        write!(out, "{}", table(&rows))?;
    }
    if let Some(gitlab) = &report.gitlab {
        writeln!(out)?;
        write!(out, "{}", super::run_tables::gitlab_rows(gitlab))?;
        if let Some(reason) = &gitlab.reason {
            writeln!(out, "note: gitlab: {reason}")?;
        }
    }
    for message in &report.messages {
        writeln!(out, "note: {message}")?;
    }
    Ok(())
}
