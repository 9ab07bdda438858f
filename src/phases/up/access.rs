//! The read-only uses of a connected fleet besides `up`: `edgeops kubeconfig` (fetch, point at
//! the API endpoint, merge) and `edgeops status` (facts, services, nodes, GitLab charts).

use super::*;
use crate::engine::last_lines;
use crate::k3s::kubeconfig::{self, write_private_atomic};
use crate::k3s::quorum::lost_quorum_note;
use std::path::PathBuf;

/// Rewrite the k3s kubeconfig for the API endpoint and merge it into `target` (0600). Writes
/// only when the merged file differs. Returns whether it wrote.
pub(super) fn merge_kubeconfig(
    inventory: &Inventory,
    first: &str,
    text: &str,
    target: &KubeconfigTarget,
) -> anyhow::Result<bool> {
    let ours = kubeconfig::for_endpoint(inventory, first, text, &target.context)?;
    kubeconfig::merge_if_changed(&target.path, &ours)
}

/// How long `edgeops kubeconfig` waits for the first server's API before reading its
/// kubeconfig (a running cluster answers at once).
pub const KUBECONFIG_API_WAIT: Duration = Duration::from_secs(10);

/// `edgeops kubeconfig`: fetch the first server's kubeconfig and merge it (or write it alone to
/// `out`). One round trip on `engine`'s one host, the first server.
pub async fn fetch_kubeconfig(
    engine: Engine,
    inventory: &Inventory,
    merge_into: KubeconfigTarget,
    out: Option<PathBuf>,
) -> anyhow::Result<String> {
    let id = engine
        .ids()
        .next()
        .ok_or_else(|| anyhow::anyhow!("kubeconfig: no first server to read from"))?;
    let first = engine.name(id).to_owned();
    let script = remote::api_script(
        KUBECONFIG_API_WAIT,
        ApiRead {
            token: false,
            kubeconfig: true,
        },
    );
    let request = ExecRequest::new(script).sudo(true);
    let result = engine
        .exec(id, "kubeconfig", &request, Output::Secret)
        .await;
    engine.close().await;
    let out_text = result.map_err(|f| anyhow::anyhow!("{first}: reading the kubeconfig: {f}"))?;
    if !out_text.success() {
        anyhow::bail!(
            "{first}: cannot read {} ({}): {}",
            remote::K3S_KUBECONFIG_PATH,
            out_text.exit,
            last_lines(&String::from_utf8_lossy(&out_text.stderr), 3)
        );
    }
    let (_, text) = remote::parse_api_output(&out_text.stdout_lossy());
    let text = text.ok_or_else(|| anyhow::anyhow!("{first}: no kubeconfig in the answer"))?;
    match out {
        Some(path) => {
            let ours = kubeconfig::for_endpoint(inventory, &first, &text, &merge_into.context)?;
            write_private_atomic(&path, ours.to_yaml().as_bytes())?;
            Ok(format!(
                "wrote {} (context {})",
                path.display(),
                merge_into.context
            ))
        }
        None => {
            let changed = merge_kubeconfig(inventory, &first, &text, &merge_into)?;
            Ok(format!(
                "{} {} (context {})",
                if changed {
                    "merged into"
                } else {
                    "already current:"
                },
                merge_into.path.display(),
                merge_into.context
            ))
        }
    }
}

/// `edgeops status`: facts of every host and the node table from the first server. Changes
/// nothing: facts (the first server's carrying the node list), the nodes and quorum, the
/// GitLab charts.
pub async fn status(
    engine: Engine,
    inventory: &Inventory,
    hosts: &[Host],
) -> anyhow::Result<RunReport> {
    let options = UpOptions::read_only();
    status_on(Runner::new(inventory, hosts, engine, options)?).await
}

/// The phases of `status` over a connected run state; the sessions closed at the end.
pub(super) async fn status_on(mut runner: Runner<'_>) -> anyhow::Result<RunReport> {
    let result = run_phases(&mut runner, &status_phases()).await;
    runner.core.engine.close().await;
    result?;
    Ok(runner.status_report())
}

/// `status`, in order: it changes nothing.
fn status_phases<'i>() -> Manager<'i, Runner<'i>> {
    Manager::new(false)
        .then(phases::status_facts())
        .then(phases::status_nodes())
        .then(phases::status_git_lab())
}

impl Runner<'_> {
    /// The facts of every host; the first server's facts and node list in one exec (with sudo,
    /// for the admin kubeconfig). The node list when it came with them.
    pub(super) async fn status_facts(&mut self) -> Option<Vec<NodeStatus>> {
        let first = self.core.first;
        let first_facts = FirstFacts {
            script: fold::facts_with_nodes(&facts::script()),
            with_lock: false,
            reply: Mutex::new(None),
        };
        self.gather(Some(&first_facts)).await;
        let Some(Ok(out)) = first_facts
            .reply
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
        else {
            return None;
        };
        match fold::split_facts_with_nodes(&out.stdout_lossy()) {
            Some((_, nodes_text)) => nodes_text.and_then(|text| nodes::parse_nodes(text).ok()),
            None => {
                // sudo refused before the script ran: the facts need no root, so ask again
                // without it, as `up` would (its preflight then names the sudo problem).
                let request = ExecRequest::new(facts::script()).max_output(facts::MAX_OUTPUT);
                let facts = self
                    .core
                    .engine
                    .run(first, "facts", &request, Output::Logged)
                    .await
                    .and_then(|out| {
                        facts::bounded(&out).map_err(|e| Failure::refused(format!("{e:#}")))?;
                        Ok(Facts::parse(&out.stdout_lossy()))
                    });
                match facts {
                    Ok(facts) => self.hosts[first].facts = Some(facts),
                    Err(failure) => self.hosts[first].fail(failure),
                }
                None
            }
        }
    }

    /// The node table and the quorum (from the first server), when it runs a k3s server.
    pub(super) async fn status_nodes(&mut self, nodes_read: Option<Vec<NodeStatus>>) {
        let first = self.core.first;
        let first_name = self.first_name();
        if !self.hosts[first].runs_server() {
            self.message(format!(
                "{first_name} (first server) has no k3s server: no cluster yet"
            ));
            return;
        }
        let observed = match nodes_read {
            Some(observed) => Ok(observed),
            // Not read with the facts: ask on its own, for the reason if it fails again.
            None => match steps::read_nodes(&self.core, "nodes").await {
                Ok(read) => read.map_err(|e| e.to_string()),
                Err(failure) => Err(failure.reason),
            },
        };
        match observed {
            Ok(observed) => {
                let members = crate::k3s::quorum::Members::from_nodes(&observed);
                if !members.has_quorum() {
                    self.message(lost_quorum_note(
                        &self.inventory.cluster.name,
                        &first_name,
                        &members.describe(),
                    ));
                }
                self.nodes = observed
                    .iter()
                    .map(|n| NodeRow::from_status(n, Vec::new()))
                    .collect();
            }
            Err(reason) => {
                self.message(format!("{first_name}: cannot list nodes: {reason}"));
                if reason.contains("etcdserver") {
                    self.message(lost_quorum_note(
                        &self.inventory.cluster.name,
                        &first_name,
                        "see the servers above",
                    ));
                }
            }
        }
    }

    /// The report of `status`: each host's facts, and its k3s service as the result.
    fn status_report(self) -> RunReport {
        let facts: Vec<Option<Facts>> = self.hosts.iter().map(|(_, s)| s.facts.clone()).collect();
        let mut report = self.report();
        for (host, facts) in report.hosts.iter_mut().zip(facts) {
            if host.status == Status::Unchanged {
                host.line.result = match facts.as_ref().and_then(|f| f.services.first()) {
                    Some(s) => format!("{} {}", s.unit, s.state),
                    None => "no k3s".to_owned(),
                };
            }
            host.facts = facts;
        }
        report
    }
}
