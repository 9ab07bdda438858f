//! `up`'s last phase: poll the first server's node list every [`POLL_EVERY`] until every
//! expected node is Ready with the pinned version, labels and taints (or `--ready-timeout`),
//! and record the node table.

use super::*;

impl Runner<'_> {
    /// The hosts verify waits for: every host still alive.
    pub(super) fn to_verify(&self) -> Vec<HostId> {
        if self.version.is_none() {
            return Vec::new();
        }
        self.alive_where(|_, _| true)
    }

    /// Poll until every expected node is Ready as the inventory says, or `--ready-timeout`.
    pub(super) async fn verify(&mut self, ids: &[HostId]) {
        let Some(version) = self.version.clone() else {
            return;
        };
        let expected: Vec<nodes::ExpectedNode> =
            match nodes::expected_nodes(self.inventory, Some(&version)) {
                Ok(all) => all
                    .into_iter()
                    .filter(|node| {
                        ids.iter()
                            .any(|&id| self.hosts[id].host.node_name == node.name)
                    })
                    .collect(),
                Err(e) => {
                    self.message(format!("verify: {e}"));
                    return;
                }
            };
        let host_of = |this: &Runner<'_>, node: &str| {
            ids.iter()
                .copied()
                .find(|&id| this.hosts[id].host.node_name == node)
        };
        let observer = self.core.engine.observer().clone();
        observer.event(&Progress::PhaseStart {
            phase: "verify",
            hosts: expected.len(),
        });
        let first = self.core.first;
        let first_name = self.first_name();
        let deadline = Instant::now() + self.options.ready_timeout;
        let mut reported_ok: Vec<String> = Vec::new();
        // Nothing after verify changes a host unless the GitLab phase follows: the first poll
        // carries the lock's release.
        let release = !self.gitlab_follows();
        let (check, observed) = loop {
            let result = match self.prefetched_nodes.take() {
                Some(text) => Ok(text),
                None => {
                    let request = ExecRequest::new(remote::NODES_COMMAND).sudo(true);
                    self.run_releasing(first, "nodes", request, Output::Logged, release)
                        .await
                        .map(|out| out.stdout_lossy())
                }
            };
            // After Ctrl-C, polling on until the deadline would only keep the user waiting.
            let give_up = Instant::now() >= deadline || self.core.engine.is_cancelled();
            let result = result.and_then(|text| {
                nodes::parse_nodes(&text)
                    .map_err(|e| Failure::new(FailureKind::Exited, format!("nodes: {e}")))
            });
            let observed: Vec<NodeStatus> = match result {
                Ok(observed) => observed,
                Err(failure) if give_up => {
                    self.message(format!(
                        "verify: cannot read the nodes from {first_name}: {}",
                        failure.reason
                    ));
                    for &id in ids {
                        self.hosts[id].fail(Failure {
                            reason: format!("not verified: {}", failure.reason),
                            ..failure.clone()
                        });
                    }
                    observer.event(&Progress::PhaseEnd { phase: "verify" });
                    return;
                }
                Err(_) => {
                    tokio::time::sleep(POLL_EVERY).await;
                    continue;
                }
            };
            let check = nodes::check_nodes(&expected, &observed);
            for report in check.reports.iter().filter(|r| r.is_ok()) {
                if !reported_ok.contains(&report.name) {
                    reported_ok.push(report.name.clone());
                    if let Some(id) = host_of(self, &report.name) {
                        observer.event(&Progress::HostDone {
                            phase: "verify",
                            host: self.core.engine.name(id),
                            ok: true,
                            detail: "Ready",
                        });
                    }
                }
            }
            if check.all_ok() || give_up {
                break (check, observed);
            }
            tokio::time::sleep(POLL_EVERY).await;
        };
        observer.event(&Progress::PhaseEnd { phase: "verify" });
        for report in &check.reports {
            let Some(id) = host_of(self, &report.name) else {
                continue;
            };
            if !report.is_ok() {
                let reason = format!(
                    "node {} after {}: {}",
                    report.name,
                    humantime::format_duration(self.options.ready_timeout),
                    report.problems.join("; ")
                );
                observer.event(&Progress::HostDone {
                    phase: "verify",
                    host: self.core.engine.name(id),
                    ok: false,
                    detail: &reason,
                });
                let kind = if self.core.engine.is_cancelled() {
                    FailureKind::Cancelled
                } else {
                    FailureKind::TimedOut
                };
                self.hosts[id].fail(Failure::new(kind, reason));
            }
        }
        // Only nodes no inventory host names: an unreachable or failed host was left out of
        // `expected`, but its node is not a stranger.
        let strangers = nodes::not_in_inventory(self.inventory, &check.unexpected);
        if !strangers.is_empty() {
            self.message(format!(
                "nodes not in the inventory: {} (left alone)",
                strangers.join(", ")
            ));
        }
        self.nodes = observed
            .iter()
            .map(|node| {
                let problems = check
                    .reports
                    .iter()
                    .find(|r| r.name == node.name)
                    .map(|r| r.problems.clone())
                    .unwrap_or_default();
                NodeRow::from_status(node, problems)
            })
            .collect();
    }
}
