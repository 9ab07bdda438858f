//! The end of a fleet run: each cluster's own report (as its single-inventory command prints
//! it), then one summary row per cluster; or one JSON document holding both.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::commands::run_tables::table;
use crate::commands::runs::ClusterReport;
use crate::phases::Status;

/// Hosts, then per status: done, unchanged, planned; and failed or skipped.
fn counts(report: &ClusterReport) -> (usize, usize, usize, usize, usize) {
    let statuses: Vec<Status> = match report {
        ClusterReport::Run(r) => r.hosts.iter().map(|h| h.status).collect(),
        ClusterReport::Upgrade(r) => r.hosts.iter().map(|h| h.status).collect(),
    };
    let count = |s: Status| statuses.iter().filter(|&&x| x == s).count();
    let failed = match report {
        ClusterReport::Run(r) => r.failed_hosts(),
        ClusterReport::Upgrade(r) => r.failed_hosts(),
    };
    (
        statuses.len(),
        count(Status::Done),
        count(Status::Unchanged),
        count(Status::Planned),
        failed,
    )
}

/// How one cluster's run ended.
#[derive(Debug, Serialize)]
pub struct ClusterOutcome {
    pub cluster: String,
    pub inventory: PathBuf,
    /// `ok` or `failed`.
    pub result: &'static str,
    /// Why it failed (the same reason its single-inventory run exits 1 with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub hosts: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub planned: usize,
    pub failed: usize,
    pub seconds: f64,
    /// The cluster's full report, as `-o json` of its own run gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ClusterReport>,
}

impl ClusterOutcome {
    pub fn new(
        cluster: String,
        inventory: PathBuf,
        result: anyhow::Result<ClusterReport>,
        took: Duration,
    ) -> Self {
        let seconds = (took.as_secs_f64() * 10.0).round() / 10.0;
        match result {
            Ok(report) => {
                let (hosts, changed, unchanged, planned, failed) = counts(&report);
                // The same reason the cluster's single-inventory run exits 1 with.
                let reason = report.exit_code().err().map(|e| format!("{e:#}"));
                ClusterOutcome {
                    cluster,
                    inventory,
                    result: if reason.is_some() { "failed" } else { "ok" },
                    reason,
                    hosts,
                    changed,
                    unchanged,
                    planned,
                    failed,
                    seconds,
                    report: Some(report),
                }
            }
            Err(e) => ClusterOutcome {
                cluster,
                inventory,
                result: "failed",
                reason: Some(format!("{e:#}")),
                hosts: 0,
                changed: 0,
                unchanged: 0,
                planned: 0,
                failed: 0,
                seconds,
                report: None,
            },
        }
    }

    fn ok(&self) -> bool {
        self.result == "ok"
    }
}

/// Every cluster's outcome, in inventory order.
#[derive(Debug, Serialize)]
pub struct FleetReport {
    pub clusters: Vec<ClusterOutcome>,
    /// Hosts at work at once over all clusters (connections and steps).
    pub connection_budget: usize,
    pub seconds: f64,
}

impl FleetReport {
    pub fn new(clusters: Vec<ClusterOutcome>, budget: usize, took: Duration) -> Self {
        FleetReport {
            clusters,
            connection_budget: budget,
            seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
        }
    }

    pub fn failed_clusters(&self) -> usize {
        self.clusters.iter().filter(|c| !c.ok()).count()
    }

    /// JSON: this whole document. Text: each cluster's report under a header (printed by
    /// `each`, the single-inventory command's printer), then the summary table.
    pub fn print(
        &self,
        global: &GlobalArgs,
        each: impl Fn(&GlobalArgs, &ClusterReport) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if global.output == OutputFormat::Json {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", serde_json::to_string_pretty(self)?)?;
            return Ok(());
        }
        if !global.quiet {
            for cluster in &self.clusters {
                println!(
                    "=== cluster {} ({})",
                    cluster.cluster,
                    cluster.inventory.display()
                );
                match &cluster.report {
                    Some(report) => each(global, report)?,
                    None => println!(
                        "error: {}",
                        cluster.reason.as_deref().unwrap_or("no report")
                    ),
                }
                println!();
            }
        }
        print!("{}", self.summary_text());
        Ok(())
    }

    fn summary_text(&self) -> String {
        let mut rows = vec![
            [
                "CLUSTER",
                "INVENTORY",
                "RESULT",
                "HOSTS",
                "CHANGED",
                "UNCHANGED",
                "PLANNED",
                "FAILED",
                "TIME",
                "REASON",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for c in &self.clusters {
            rows.push(vec![
                c.cluster.clone(),
                c.inventory.display().to_string(),
                c.result.to_owned(),
                c.hosts.to_string(),
                c.changed.to_string(),
                c.unchanged.to_string(),
                c.planned.to_string(),
                c.failed.to_string(),
                format!("{:.1}s", c.seconds),
                c.reason.clone().unwrap_or_default(),
            ]);
        }
        let failed = self.failed_clusters();
        format!(
            "{}{} cluster(s): {} ok, {failed} failed; {:.1}s, at most {} host(s) at work at once\n",
            table(&rows),
            self.clusters.len(),
            self.clusters.len() - failed,
            self.seconds,
            self.connection_budget
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phases::RunReport;

    fn outcome(name: &str, result: anyhow::Result<ClusterReport>) -> ClusterOutcome {
        ClusterOutcome::new(
            name.into(),
            PathBuf::from(format!("sites/{name}.toml")),
            result,
            Duration::from_millis(1234),
        )
    }

    #[test]
    fn a_cluster_that_could_not_run_is_a_failed_row_and_the_others_stay() {
        let report = FleetReport::new(
            vec![
                outcome(
                    "a",
                    Err(anyhow::anyhow!(
                        "cluster a is locked by another edgeops run"
                    )),
                ),
                outcome(
                    "b",
                    Ok(ClusterReport::Run(RunReport {
                        cluster: "b".into(),
                        version: None,
                        version_source: None,
                        dry_run: false,
                        hosts: Vec::new(),
                        nodes: Vec::new(),
                        kubeconfig: None,
                        kubeconfig_error: None,
                        log_dir: None,
                        messages: Vec::new(),
                        phases: Vec::new(),
                        gitlab: None,
                    })),
                ),
            ],
            8,
            Duration::from_secs(3),
        );
        assert_eq!(report.failed_clusters(), 1);
        let text = report.summary_text();
        assert!(text.contains("a        sites/a.toml  failed"), "{text}");
        assert!(text.contains("locked by another edgeops run"), "{text}");
        assert!(text.contains("b        sites/b.toml  ok"), "{text}");
        assert!(
            text.ends_with(
                "2 cluster(s): 1 ok, 1 failed; 3.0s, at most 8 host(s) at work at once\n"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["clusters"][0]["result"], "failed");
        assert_eq!(json["clusters"][1]["report"]["cluster"], "b");
    }
}
