//! The one column-aligned table every command prints with, and the tables several reports
//! share: the cluster's nodes and the GitLab phase.

use crate::phases::gitlab::GitLabReport;
use crate::phases::{NodeRow, Status};

/// A table's first row.
pub fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|&name| name.to_owned()).collect()
}

/// The cluster's nodes as the API reports them; `up` and `plan` add a PROBLEMS column (why a
/// node is not as the inventory expects).
pub fn node_table(nodes: &[NodeRow], problems: bool) -> String {
    let mut columns = vec!["NODE", "STATUS", "ROLES", "VERSION", "ARCH"];
    if problems {
        columns.push("PROBLEMS");
    }
    let mut rows = vec![header(&columns)];
    for node in nodes {
        let mut row = vec![
            node.name.clone(),
            node.ready.clone(),
            node.roles.clone(),
            node.version.clone(),
            node.arch.clone(),
        ];
        if problems {
            row.push(node.problems.join("; "));
        }
        rows.push(row);
    }
    table(&rows)
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
    let mut rows = vec![header(&["GITLAB", "NAME", "RESULT", "DETAIL"])];
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
