//! `edgeops upgrade INVENTORY --version V | --channel C`: a rolling k3s upgrade (servers one at
//! a time, then agents in batches), with the same progress view as `up` and a per-host table
//! (`FROM → TO`) or JSON at the end. Exit codes as `up`: 0, 1 some host failed, 2 bad input or a
//! refused downgrade (nothing changed).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{GlobalArgs, OutputFormat, UpgradeArgs};
use crate::engine::runlog::{Redactor, RunLog};
use crate::exit::Failure;
use crate::inventory;
use crate::k3s::token::read_join_token;
use crate::k3s::{Channel, K3sVersion};
use crate::phases::upgrade::{self, Target, UpgradeError, UpgradeOptions, UpgradeReport};
use crate::phases::{Observer, Status};

use super::run_setup::{Prepared, prepare, with_interrupt};
use super::run_tables::table;

pub fn run(global: &GlobalArgs, args: &UpgradeArgs) -> anyhow::Result<ExitCode> {
    let target = target(args)?;
    if args.batch_size == 0 {
        return Err(Failure::Usage("--batch-size must be at least 1".into()).into());
    }
    let prepared = prepare(global, &args.inventory, true)?;
    let (options, redactor) = upgrade_options(global, &prepared, args, target)?;
    let log = RunLog::create(&prepared.inventory.cluster.name, redactor);
    let view = super::run_progress(global);
    let observer: Arc<dyn Observer> = view.clone();
    let runtime = super::runtime()?;
    let report = runtime.block_on(async {
        let Prepared {
            inventory,
            hosts,
            targets,
            ctx,
            ..
        } = &prepared;
        with_interrupt(
            ctx,
            upgrade::upgrade(
                inventory,
                hosts.clone(),
                targets.clone(),
                ctx.clone(),
                options,
                observer,
                log,
            ),
        )
        .await
    });
    view.finish();
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            // A refused downgrade or version skew is bad input: nothing was changed (exit 2).
            if let Some(
                refused @ (UpgradeError::Downgrade { .. }
                | UpgradeError::ServersBehind { .. }
                | UpgradeError::Quorum { .. }
                | UpgradeError::SkipsMinor(_)),
            ) = e.downcast_ref::<UpgradeError>()
            {
                return Err(Failure::Usage(refused.to_string()).into());
            }
            return Err(e);
        }
    };
    print_report(global, &report)?;
    let failed = report.failed_hosts();
    if failed == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::HostsFailed {
            failed,
            total: report.hosts.len(),
        }
        .into())
    }
}

/// What one cluster's upgrade needs besides its hosts, read before any host is touched (a bad
/// `--limit` or token is bad input, exit 2): the options, with the redactor that knows the
/// token. Fleet runs (`commands::fleet`) build one per cluster.
pub fn upgrade_options(
    global: &GlobalArgs,
    prepared: &Prepared,
    args: &UpgradeArgs,
    target: Target,
) -> anyhow::Result<(UpgradeOptions, Redactor)> {
    let selected: Vec<String> = inventory::select(&prepared.inventory, global.limit.as_deref())
        .map_err(|e| Failure::Usage(e.to_string()))?
        .into_iter()
        .map(|h| h.name.clone())
        .collect();
    let token = read_join_token(&prepared.inventory.cluster.token)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let redactor = Redactor::default();
    if let Some(token) = &token {
        redactor.add(token.expose());
    }
    let options = UpgradeOptions {
        target,
        batch_size: args.batch_size,
        drain: args.drain,
        drain_timeout: args.drain_timeout,
        force: args.force,
        ready_timeout: args.ready_timeout,
        lock_stale_after: prepared.inventory.cluster.lock_expiry,
        fleet: prepared.fleet_settings.clone(),
        token,
        selected,
        dry_run: args.dry_run,
    };
    Ok((options, redactor))
}

/// `--version` or `--channel` (exactly one), parsed; a bad one is bad input (exit 2).
pub fn target(args: &UpgradeArgs) -> anyhow::Result<Target> {
    match (&args.version, &args.channel) {
        (Some(version), None) => Ok(Target::Version(
            version
                .parse::<K3sVersion>()
                .map_err(|e| Failure::Usage(format!("--version: {e}")))?,
        )),
        (None, Some(channel)) => Ok(Target::Channel(
            channel
                .parse::<Channel>()
                .map_err(|e| Failure::Usage(format!("--channel: {e}")))?,
        )),
        _ => Err(Failure::Usage(
            "give the target: --version V (e.g. v1.31.4+k3s1) or --channel C (e.g. stable, v1.31)"
                .into(),
        )
        .into()),
    }
}

/// The per-host table (`FROM → TO`), the node table, notes and a summary line; or JSON.
pub fn print_report(global: &GlobalArgs, report: &UpgradeReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if global.output == OutputFormat::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
        return Ok(());
    }
    write!(out, "{}", render_text(report))?;
    Ok(())
}

fn render_text(report: &UpgradeReport) -> String {
    let mut text = String::new();
    if report.dry_run {
        text.push_str("dry run: nothing was changed\n");
    }
    if let Some(target) = &report.target {
        text.push_str(&format!(
            "cluster {}: upgrade to k3s {target}{}\n",
            report.cluster,
            report
                .target_source
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        ));
    }
    let mut rows = vec![vec![
        "HOST".to_owned(),
        "ROLE".into(),
        "FROM".into(),
        "TO".into(),
        "RESULT".into(),
        "TIME".into(),
        "REASON".into(),
    ]];
    for host in &report.hosts {
        rows.push(vec![
            host.host.clone(),
            host.role.to_owned(),
            host.from.clone().unwrap_or_else(|| "-".into()),
            host.to.clone().unwrap_or_else(|| "-".into()),
            host.result_text(),
            format!("{:.1}s", host.seconds),
            host.reason.clone().unwrap_or_default(),
        ]);
    }
    text.push_str(&table(&rows));
    if !report.nodes.is_empty() {
        text.push('\n');
        let mut rows = vec![vec![
            "NODE".to_owned(),
            "STATUS".into(),
            "ROLES".into(),
            "VERSION".into(),
            "ARCH".into(),
        ]];
        for node in &report.nodes {
            rows.push(vec![
                node.name.clone(),
                node.ready.clone(),
                node.roles.clone(),
                node.version.clone(),
                node.arch.clone(),
            ]);
        }
        text.push_str(&table(&rows));
    }
    for message in &report.messages {
        text.push_str(&format!("note: {message}\n"));
    }
    if let Some(dir) = &report.log_dir {
        text.push_str(&format!("logs: {dir}\n"));
    }
    let count = |s: Status| report.hosts.iter().filter(|h| h.status == s).count();
    if report.dry_run {
        text.push_str(&format!(
            "{} host(s): {} would upgrade, {} already at the target, {} failed, {} skipped\n",
            report.hosts.len(),
            count(Status::Planned),
            count(Status::Unchanged),
            count(Status::Failed),
            count(Status::Skipped)
        ));
        return text;
    }
    text.push_str(&format!(
        "{} host(s): {} upgraded, {} already at the target, {} failed, {} skipped\n",
        report.hosts.len(),
        count(Status::Done),
        count(Status::Unchanged),
        count(Status::Failed),
        count(Status::Skipped)
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phases::upgrade::UpgradeHost;

    #[test]
    fn the_command_line_parses_version_as_the_target() {
        use clap::{CommandFactory, Parser};
        // Every subcommand's arguments are unique (the program's own `--version` is not
        // propagated into `upgrade`, whose `--version` is the target).
        crate::cli::Cli::command().debug_assert();
        let cli = crate::cli::Cli::try_parse_from([
            "edgeops",
            "upgrade",
            "inv.toml",
            "--version",
            "v1.31.4+k3s1",
        ])
        .unwrap();
        let crate::cli::Command::Upgrade(args) = cli.command else {
            panic!("not upgrade");
        };
        assert!(
            matches!(target(&args).unwrap(), Target::Version(v) if v.to_string() == "v1.31.4+k3s1")
        );
        let both = crate::cli::Cli::try_parse_from([
            "edgeops",
            "upgrade",
            "inv.toml",
            "--version",
            "v1.31.4+k3s1",
            "--channel",
            "stable",
        ]);
        assert!(both.is_err(), "--version and --channel conflict");
        let cli = crate::cli::Cli::try_parse_from(["edgeops", "upgrade", "inv.toml"]).unwrap();
        let crate::cli::Command::Upgrade(args) = cli.command else {
            panic!("not upgrade");
        };
        assert!(target(&args).is_err(), "a target is required");
    }

    #[test]
    fn table_shows_from_to_result_and_reason() {
        let host = |name: &str, status, result: &str, reason: Option<&str>| UpgradeHost {
            host: name.into(),
            role: "agent",
            from: Some("v1.30.8+k3s1".into()),
            to: Some(
                if status == Status::Done {
                    "v1.31.4+k3s1"
                } else {
                    "v1.30.8+k3s1"
                }
                .into(),
            ),
            status,
            result: result.into(),
            failure: None,
            exit_code: None,
            reason: reason.map(str::to_owned),
            seconds: 1.0,
            log: None,
        };
        let report = UpgradeReport {
            cluster: "lab".into(),
            dry_run: false,
            target: Some("v1.31.4+k3s1".into()),
            target_source: Some("--version".into()),
            hosts: vec![
                host("lab-01", Status::Done, "upgraded", None),
                host("lab-02", Status::Failed, "failed", Some("boom")),
            ],
            nodes: Vec::new(),
            phases: Vec::new(),
            messages: Vec::new(),
            log_dir: None,
        };
        let text = render_text(&report);
        assert!(
            text.contains("upgrade to k3s v1.31.4+k3s1 (--version)"),
            "{text}"
        );
        assert!(
            text.contains("lab-01  agent  v1.30.8+k3s1  v1.31.4+k3s1  upgraded"),
            "{text}"
        );
        assert!(text.contains("failed    1.0s  boom"), "{text}");
        assert!(text.contains("2 host(s): 1 upgraded, 0 already at the target, 1 failed"));
    }

    #[test]
    fn a_failure_shows_its_kind_in_the_table_and_in_json() {
        use crate::engine::FailureKind;
        let host = |name: &str, failure, exit_code, reason: &str| UpgradeHost {
            host: name.into(),
            role: "server",
            from: Some("v1.30.8+k3s1".into()),
            to: Some("v1.30.8+k3s1".into()),
            status: if failure == FailureKind::Skipped {
                Status::Skipped
            } else {
                Status::Failed
            },
            result: if failure == FailureKind::Skipped {
                "skipped"
            } else {
                "failed"
            }
            .into(),
            failure: Some(failure),
            exit_code,
            reason: Some(reason.into()),
            seconds: 0.0,
            log: None,
        };
        let report = UpgradeReport {
            cluster: "lab".into(),
            dry_run: false,
            target: Some("v1.31.4+k3s1".into()),
            target_source: Some("--version".into()),
            hosts: vec![
                host(
                    "lab-01",
                    FailureKind::TimedOut,
                    None,
                    "node lab-01 not Ready",
                ),
                host(
                    "lab-02",
                    FailureKind::Exited,
                    Some(1),
                    "upgrade failed (exit 1): x",
                ),
                host("lab-03", FailureKind::Skipped, None, "server lab-01 failed"),
            ],
            nodes: Vec::new(),
            phases: Vec::new(),
            messages: Vec::new(),
            log_dir: None,
        };
        let text = render_text(&report);
        assert!(text.contains("failed (timed out)"), "{text}");
        assert!(text.contains("failed (exit 1)"), "{text}");
        assert!(text.contains("skipped  "), "{text}");
        assert!(!text.contains("skipped (skipped)"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["hosts"][0]["failure"], "timed_out");
        assert!(json["hosts"][0].get("exit_code").is_none());
        assert_eq!(json["hosts"][1]["failure"], "exited");
        assert_eq!(json["hosts"][1]["exit_code"], 1);
        assert_eq!(json["hosts"][2]["failure"], "skipped");
    }
}
