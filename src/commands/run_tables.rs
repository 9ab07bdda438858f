//! The tables (and JSON) at the end of `up`, `plan` and `status`, and the one column-aligned
//! table every command prints with.

use std::io::Write;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::engine::FailureKind;
use crate::phases::gitlab::GitLabReport;
use crate::phases::{HostReport, RunReport, Status};

// ---- tables ------------------------------------------------------------------------------

/// A host's RESULT: on a failed host also the kind, `failed (timed out)`, `failed (exited 3)`.
fn result_cell(host: &HostReport) -> String {
    match (host.status, host.failure) {
        (Status::Failed, Some(FailureKind::Exited)) => match host.exit_code {
            Some(code) => format!("{} (exited {code})", host.result),
            None => format!("{} (exited)", host.result),
        },
        (Status::Failed, Some(kind)) => format!("{} ({})", host.result, kind.as_str()),
        _ => host.result.clone(),
    }
}

/// The final report: a table per host, the node table, notes; or JSON.
pub fn print_report(global: &GlobalArgs, report: &RunReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if global.output == OutputFormat::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
        return Ok(());
    }
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
    let mut rows = vec![vec![
        "HOST".to_owned(),
        "ROLE".into(),
        "ARCH".into(),
        "VERSION".into(),
        if report.dry_run { "PLAN" } else { "RESULT" }.into(),
        "TIME".into(),
        "REASON".into(),
    ]];
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
            result_cell(host),
            format!("{:.1}s", host.seconds),
            reason,
        ]);
    }
    write!(out, "{}", table(&rows))?;
    if !report.nodes.is_empty() {
        writeln!(out)?;
        let mut rows = vec![vec![
            "NODE".to_owned(),
            "STATUS".into(),
            "ROLES".into(),
            "VERSION".into(),
            "ARCH".into(),
            "PROBLEMS".into(),
        ]];
        for node in &report.nodes {
            rows.push(vec![
                node.name.clone(),
                node.ready.clone(),
                node.roles.clone(),
                node.version.clone(),
                node.arch.clone(),
                node.problems.join("; "),
            ]);
        }
        write!(out, "{}", table(&rows))?;
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
    Ok(())
}

/// The GitLab phase as a table (`GITLAB` rows: what in GitLab or on the first server, and what
/// became of it), then its outcome line.
pub fn gitlab_table(gitlab: &GitLabReport) -> String {
    let mut text = gitlab_rows(gitlab);
    let word = match gitlab.status {
        Status::Done => "changed",
        Status::Unchanged => "nothing to do",
        Status::Failed => "FAILED",
        Status::Skipped => "skipped",
        Status::Planned => "planned",
    };
    text.push_str(&format!(
        "gitlab: {word}{} ({} command(s) on the first server, {:.1}s)\n",
        gitlab
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default(),
        gitlab.commands,
        gitlab.seconds
    ));
    text
}

/// Only the rows of [`gitlab_table`] (empty when there are none).
pub fn gitlab_rows(gitlab: &GitLabReport) -> String {
    let mut rows = vec![
        ["GITLAB", "NAME", "RESULT", "DETAIL"]
            .map(String::from)
            .to_vec(),
    ];
    for row in &gitlab.rows {
        rows.push(vec![
            row.item.clone(),
            row.name.clone(),
            row.result.clone(),
            row.detail.clone(),
        ]);
    }
    if gitlab.rows.is_empty() {
        String::new()
    } else {
        table(&rows)
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_table_shows_rows_then_the_outcome_with_its_reason() {
        let report = GitLabReport {
            status: Status::Failed,
            reason: Some("charts not deployed after 5m: gitlab-runner missing".into()),
            rows: vec![crate::phases::gitlab::GitLabRow {
                item: "chart".into(),
                name: "gitlab-runner".into(),
                result: "missing".into(),
                detail: String::new(),
            }],
            commands: 3,
            seconds: 1.25,
        };
        assert_eq!(
            gitlab_table(&report),
            "GITLAB  NAME           RESULT   DETAIL\n\
             chart   gitlab-runner  missing\n\
             gitlab: FAILED: charts not deployed after 5m: gitlab-runner missing \
             (3 command(s) on the first server, 1.2s)\n"
        );
        let skipped = GitLabReport::skipped("the cluster did not come up");
        assert_eq!(gitlab_rows(&skipped), "");
        assert!(skipped.is_failure());
    }

    #[test]
    fn a_failed_hosts_result_names_the_kind_of_failure() {
        let host = |status, failure, exit_code| HostReport {
            host: "a1".into(),
            role: "agent",
            arch: None,
            version: None,
            status,
            result: match status {
                Status::Failed => "failed".into(),
                _ => "skipped".into(),
            },
            decision: None,
            reason: Some("why".into()),
            failure,
            exit_code,
            warnings: Vec::new(),
            seconds: 0.0,
            commands: 0,
            log: None,
            facts: None,
        };
        let cell = |status, kind, code| result_cell(&host(status, Some(kind), code));
        assert_eq!(
            cell(Status::Failed, FailureKind::TimedOut, None),
            "failed (timed out)"
        );
        assert_eq!(
            cell(Status::Failed, FailureKind::Exited, Some(7)),
            "failed (exited 7)"
        );
        assert_eq!(
            cell(Status::Failed, FailureKind::Unreachable, None),
            "failed (unreachable)"
        );
        assert_eq!(cell(Status::Skipped, FailureKind::Skipped, None), "skipped");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["HOST".into(), "RESULT".into(), "REASON".into()],
            vec!["lab-01".into(), "installed".into(), "".into()],
            vec!["x".into(), "failed".into(), "boom".into()],
        ];
        assert_eq!(
            table(&rows),
            "HOST    RESULT     REASON\nlab-01  installed\nx       failed     boom\n"
        );
    }
}
