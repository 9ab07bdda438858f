//! `up`'s last phase: poll the first server's node list until every expected node is Ready
//! with the pinned version, labels and taints (or the timeout), and record the node table.

use super::*;

impl Runner<'_> {
    /// Poll until every expected node is Ready as the inventory says, or `--ready-timeout`.
    pub(super) async fn verify(&mut self) {
        let Some(version) = self.version.clone() else {
            return;
        };
        let names: Vec<String> = self
            .order
            .iter()
            .filter(|n| self.hosts[*n].alive())
            .cloned()
            .collect();
        if names.is_empty() {
            return;
        }
        let expected: Vec<nodes::ExpectedNode> =
            match nodes::expected_nodes(self.inventory, Some(&version)) {
                Ok(all) => all
                    .into_iter()
                    .filter(|node| {
                        names
                            .iter()
                            .any(|n| self.hosts[n].host.node_name == node.name)
                    })
                    .collect(),
                Err(e) => {
                    self.message(format!("verify: {e}"));
                    return;
                }
            };
        self.observer.event(&Progress::PhaseStart {
            phase: "verify",
            hosts: expected.len(),
        });
        let first = self.first.clone();
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
                    if release {
                        self.step_releasing(&first, "nodes", request, false).await
                    } else {
                        self.step(&first, "nodes", request, false).await
                    }
                    .map(|out| out.stdout_lossy())
                }
            };
            // After Ctrl-C, polling on until the deadline would only keep the user waiting.
            let give_up = Instant::now() >= deadline || self.fleet.context().cancel.is_cancelled();
            let result = result
                .and_then(|text| nodes::parse_nodes(&text).map_err(|e| format!("nodes: {e}")));
            let observed: Vec<NodeStatus> = match result {
                Ok(observed) => observed,
                Err(reason) if give_up => {
                    self.message(format!(
                        "verify: cannot read the nodes from {first}: {reason}"
                    ));
                    for name in &names {
                        self.state_mut(name).fail(format!("not verified: {reason}"));
                    }
                    self.observer.event(&Progress::PhaseEnd { phase: "verify" });
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
                    if let Some(host) = names
                        .iter()
                        .find(|n| self.hosts[*n].host.node_name == report.name)
                    {
                        self.observer.event(&Progress::HostDone {
                            phase: "verify",
                            host,
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
        self.observer.event(&Progress::PhaseEnd { phase: "verify" });
        for report in &check.reports {
            let Some(name) = names
                .iter()
                .find(|n| self.hosts[*n].host.node_name == report.name)
            else {
                continue;
            };
            if !report.is_ok() {
                let reason = format!(
                    "node {} after {}: {}",
                    report.name,
                    humantime::format_duration(self.options.ready_timeout),
                    report.problems.join("; ")
                );
                self.observer.event(&Progress::HostDone {
                    phase: "verify",
                    host: name,
                    ok: false,
                    detail: &reason,
                });
                self.state_mut(name).fail(reason);
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
