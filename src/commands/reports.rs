//! The reports at the end of `up`/`plan`, `status` and `upgrade`: a text table per host (with
//! the failure kind of a failed host), the shared node and GitLab tables, notes and a summary
//! line; or the report as JSON.

use std::fmt::Write as _;
use std::io::Write as _;

use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::phases::upgrade::UpgradeReport;
use crate::phases::{RunReport, Status};

use super::run_tables::{gitlab_rows, gitlab_table, header, node_table, table};

/// The report as JSON with `-o json`, else as `text` renders it: the one way every command's
/// final report goes out on stdout.
pub fn print<T: Serialize, E: Into<anyhow::Error>>(
    global: &GlobalArgs,
    report: &T,
    text: impl FnOnce(&T) -> Result<String, E>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if global.output == OutputFormat::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
    } else {
        write!(out, "{}", text(report).map_err(Into::into)?)?;
    }
    Ok(())
}

/// `Err` ([`crate::exit::Failure::HostsFailed`], its exit code) when `failed` of `total` hosts
/// failed.
pub fn hosts_failed(failed: usize, total: usize) -> anyhow::Result<()> {
    if failed > 0 {
        return Err(crate::exit::Failure::HostsFailed { failed, total }.into());
    }
    Ok(())
}

/// `up` and `plan`: a row per host, the node table, the GitLab table, notes, a summary line.
pub fn run_text(report: &RunReport) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    if let Some(version) = &report.version {
        writeln!(
            out,
            "cluster {}: k3s {version}{}",
            report.cluster,
            report
                .version_source
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        )?;
    }
    let mut rows = vec![header(&[
        "HOST",
        "ROLE",
        "ARCH",
        "VERSION",
        if report.dry_run { "PLAN" } else { "RESULT" },
        "TIME",
        "REASON",
    ])];
    for host in &report.hosts {
        let reason = match host.status {
            Status::Failed | Status::Skipped => host.reason.clone().unwrap_or_default(),
            Status::Planned => host
                .decision
                .as_ref()
                .map(|d| d.why.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        rows.push(vec![
            host.host.clone(),
            host.role.to_owned(),
            host.arch.clone().unwrap_or_else(|| "-".into()),
            host.version.clone().unwrap_or_else(|| "-".into()),
            host.result_text(),
            format!("{:.1}s", host.seconds),
            reason,
        ]);
    }
    write!(out, "{}", table(&rows))?;
    if !report.nodes.is_empty() {
        writeln!(out)?;
        write!(out, "{}", node_table(&report.nodes, true))?;
    }
    if let Some(gitlab) = &report.gitlab {
        writeln!(out)?;
        write!(out, "{}", gitlab_table(gitlab))?;
    }
    for message in &report.messages {
        writeln!(out, "note: {message}")?;
    }
    if let Some(kubeconfig) = &report.kubeconfig {
        writeln!(out, "kubeconfig: {kubeconfig}")?;
    }
    if let Some(dir) = &report.log_dir {
        writeln!(out, "logs: {dir}")?;
    }
    let count = |s: Status| report.hosts.iter().filter(|h| h.status == s).count();
    let summary = if report.dry_run {
        format!(
            "{} host(s): {} would change, {} nothing to do, {} refused or unreachable",
            report.hosts.len(),
            report
                .hosts
                .iter()
                .filter(|h| h.status == Status::Planned
                    && h.decision.as_ref().is_some_and(|d| d.action.changes()))
                .count(),
            report
                .hosts
                .iter()
                .filter(|h| h.status == Status::Planned
                    && h.decision.as_ref().is_none_or(|d| !d.action.changes()))
                .count(),
            count(Status::Failed) + count(Status::Skipped),
        )
    } else {
        format!(
            "{} host(s): {} changed, {} nothing to do, {} failed, {} skipped",
            report.hosts.len(),
            count(Status::Done),
            count(Status::Unchanged),
            count(Status::Failed),
            count(Status::Skipped)
        )
    };
    writeln!(out, "{summary}")?;
    Ok(out)
}

/// `status`: the facts of each host, the node table, the GitLab charts, notes.
pub fn status_text(report: &RunReport) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    let mut rows = vec![header(&[
        "HOST", "ROLE", "OS", "ARCH", "MEM", "K3S", "SERVICE", "CONFIG", "PROBLEM",
    ])];
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
        write!(out, "{}", node_table(&report.nodes, false))?;
    }
    if let Some(gitlab) = &report.gitlab {
        writeln!(out)?;
        write!(out, "{}", gitlab_rows(gitlab))?;
        if let Some(reason) = &gitlab.reason {
            writeln!(out, "note: gitlab: {reason}")?;
        }
    }
    for message in &report.messages {
        writeln!(out, "note: {message}")?;
    }
    Ok(out)
}

/// `upgrade`: the per-host table (`FROM → TO`), the node table, notes and a summary line.
pub fn upgrade_text(report: &UpgradeReport) -> String {
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
    let mut rows = vec![header(&[
        "HOST", "ROLE", "FROM", "TO", "RESULT", "TIME", "REASON",
    ])];
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
        text.push_str(&node_table(&report.nodes, false));
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
    use crate::engine::FailureKind;
    use crate::phases::HostReport;
    use crate::phases::outcome::HostLine;
    use crate::phases::upgrade::UpgradeHost;

    /// A host row of `status` without a failure kind, timings or log.
    fn line(name: &str, status: Status, reason: Option<&str>) -> HostLine {
        HostLine {
            host: name.into(),
            role: "agent",
            status,
            result: String::new(),
            failure: None,
            exit_code: None,
            reason: reason.map(str::to_owned),
            seconds: 0.0,
            commands: 0,
            log: None,
        }
    }

    #[test]
    fn a_failed_hosts_result_names_the_kind_of_failure() {
        let host = |status, failure, exit_code| HostReport {
            line: HostLine {
                result: match status {
                    Status::Failed => "failed".into(),
                    _ => "skipped".into(),
                },
                failure,
                exit_code,
                ..line("a1", status, Some("why"))
            },
            arch: None,
            version: None,
            decision: None,
            warnings: Vec::new(),
            facts: None,
        };
        let cell = |status, kind, code| host(status, Some(kind), code).result_text();
        assert_eq!(
            cell(Status::Failed, FailureKind::TimedOut, None),
            "failed (timed out)"
        );
        assert_eq!(
            cell(Status::Failed, FailureKind::Exited, Some(7)),
            "failed (exit 7)"
        );
        assert_eq!(
            cell(Status::Failed, FailureKind::Unreachable, None),
            "failed (unreachable)"
        );
        assert_eq!(cell(Status::Skipped, FailureKind::Skipped, None), "skipped");
    }

    /// An upgrade to v1.31.4+k3s1 of cluster `lab` that ended with these hosts.
    fn upgrade_report(hosts: Vec<UpgradeHost>) -> UpgradeReport {
        UpgradeReport {
            cluster: "lab".into(),
            dry_run: false,
            target: Some("v1.31.4+k3s1".into()),
            target_source: Some("--version".into()),
            hosts,
            nodes: Vec::new(),
            phases: Vec::new(),
            messages: Vec::new(),
            log_dir: None,
        }
    }

    #[test]
    fn table_shows_from_to_result_and_reason() {
        let host = |name: &str, status, result: &str, reason: Option<&str>| UpgradeHost {
            line: HostLine {
                result: result.into(),
                seconds: 1.0,
                ..line(name, status, reason)
            },
            from: Some("v1.30.8+k3s1".into()),
            to: Some(
                if status == Status::Done {
                    "v1.31.4+k3s1"
                } else {
                    "v1.30.8+k3s1"
                }
                .into(),
            ),
        };
        let report = upgrade_report(vec![
            host("lab-01", Status::Done, "upgraded", None),
            host("lab-02", Status::Failed, "failed", Some("boom")),
        ]);
        let text = upgrade_text(&report);
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
        let host = |name: &str, failure, exit_code, reason: &str| {
            let skipped = failure == FailureKind::Skipped;
            let status = if skipped {
                Status::Skipped
            } else {
                Status::Failed
            };
            UpgradeHost {
                line: HostLine {
                    role: "server",
                    result: if skipped { "skipped" } else { "failed" }.into(),
                    failure: Some(failure),
                    exit_code,
                    ..line(name, status, Some(reason))
                },
                from: Some("v1.30.8+k3s1".into()),
                to: Some("v1.30.8+k3s1".into()),
            }
        };
        let report = upgrade_report(vec![
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
        ]);
        let text = upgrade_text(&report);
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
