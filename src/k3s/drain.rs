//! `kubectl drain` as edgeops runs it, without SSH: the command line for one node (its own
//! `--timeout` plus a grace for the SSH exec around it), and what kubectl's output says when a
//! drain fails: which pods blocked it and why (a disruption budget, a bare pod, local storage,
//! a DaemonSet pod) and whether the timeout ran out.

use std::fmt;
use std::time::Duration;

use crate::shell::shell_quote;

/// The SSH exec around `kubectl drain` waits this much longer than kubectl's own `--timeout`:
/// kubectl stops itself at its limit and reports; this only catches a hung API or connection.
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// How one node is drained. `--ignore-daemonsets` is always passed: DaemonSet pods are meant
/// to stay on every node and drain never evicts them, it would only refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainOptions {
    /// kubectl's `--timeout`: the whole drain of one node (evictions retried until then).
    pub timeout: Duration,
    /// `--force`: also delete pods no controller would recreate (bare pods).
    pub force: bool,
    /// `--delete-emptydir-data`: also evict pods with emptyDir volumes (their data is lost).
    pub delete_emptydir_data: bool,
}

impl DrainOptions {
    /// The drain command run on the first server (as root, so `k3s kubectl` reads k3s.yaml).
    pub fn command(&self, node: &str) -> String {
        let mut command = format!(
            "k3s kubectl drain {} --ignore-daemonsets",
            shell_quote(node)
        );
        if self.delete_emptydir_data {
            command.push_str(" --delete-emptydir-data");
        }
        if self.force {
            command.push_str(" --force");
        }
        command.push_str(&format!(" --timeout={}s", self.timeout.as_secs().max(1)));
        command
    }

    /// The limit of the SSH exec that runs [`DrainOptions::command`].
    pub fn exec_timeout(&self) -> Duration {
        self.timeout.max(Duration::from_secs(1)) + DRAIN_GRACE
    }

    /// A short description for plans: `drain (--timeout 2m, --force)`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!(
            "timeout {}",
            humantime::format_duration(self.timeout)
        )];
        if self.force {
            parts.push("--force".to_owned());
        }
        if self.delete_emptydir_data {
            parts.push("--delete-emptydir-data".to_owned());
        }
        format!("drain ({})", parts.join(", "))
    }
}

/// `kubectl uncordon NODE`, run on the first server.
pub fn uncordon_command(node: &str) -> String {
    format!("k3s kubectl uncordon {}", shell_quote(node))
}

/// Why one pod kept the node from draining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockReason {
    /// An eviction refused with 429 by a PodDisruptionBudget.
    DisruptionBudget,
    /// A pod no controller would recreate (refused without `--force`).
    NoController,
    /// A pod with an emptyDir volume (refused without `--delete-emptydir-data`).
    LocalStorage,
    /// A DaemonSet pod (refused without `--ignore-daemonsets`).
    DaemonSet,
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockReason::DisruptionBudget => {
                "eviction refused: it would violate the pod's disruption budget"
            }
            BlockReason::NoController => "no controller would recreate it (pass --force)",
            BlockReason::LocalStorage => "it has emptyDir data (pass --delete-emptydir-data)",
            BlockReason::DaemonSet => "DaemonSet pod",
        })
    }
}

/// What a failed `kubectl drain` reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainFailure {
    /// `namespace/name` and why, in the order kubectl named them (each pod once).
    pub blockers: Vec<(String, BlockReason)>,
    /// kubectl's `--timeout` ran out.
    pub timed_out: bool,
    /// The node is not in the cluster (nothing to drain).
    pub node_not_found: bool,
}

impl DrainFailure {
    /// Read kubectl's stderr (the simulator prints the same lines as kubectl 1.2x-1.3x).
    pub fn parse(stderr: &str) -> DrainFailure {
        let mut failure = DrainFailure::default();
        let add = |pod: String, reason: BlockReason, failure: &mut DrainFailure| {
            if !failure.blockers.iter().any(|(p, _)| *p == pod) {
                failure.blockers.push((pod, reason));
            }
        };
        for line in stderr.lines() {
            let line = line.trim();
            let line = line.strip_prefix("error: ").unwrap_or(line);
            if line.contains("global timeout reached") || line.contains("did not complete within") {
                failure.timed_out = true;
            }
            if line.starts_with("Error from server (NotFound): nodes ") {
                failure.node_not_found = true;
            }
            if let Some(rest) = line.strip_prefix("error when evicting pods/")
                && rest.contains("disruption budget")
                && let Some(pod) = evicting_pod(rest)
            {
                add(pod, BlockReason::DisruptionBudget, &mut failure);
                continue;
            }
            // The refusals, one line per kind once kubectl has listed them:
            // `cannot delete <what>: ns/a, ns/b`.
            if let Some(rest) = line.strip_prefix("cannot delete ") {
                // "declare no controller" since kubectl 1.2x; "not managed by
                // ReplicationController, ..." before.
                let reason =
                    if rest.contains("declare no controller") || rest.contains("not managed by") {
                        BlockReason::NoController
                    } else if rest.contains("local storage") {
                        BlockReason::LocalStorage
                    } else if rest.contains("DaemonSet-managed") {
                        BlockReason::DaemonSet
                    } else {
                        continue;
                    };
                if let Some((_, pods)) = rest.rsplit_once("): ") {
                    for pod in pods.split(", ").map(str::trim).filter(|p| p.contains('/')) {
                        add(pod.to_owned(), reason.clone(), &mut failure);
                    }
                }
            }
        }
        failure
    }

    /// One line for a report: `timed out after 30s; blocked by default/web-x (eviction refused:
    /// ...), default/bare (no controller ...)`.
    pub fn summary(&self, timeout: Duration) -> String {
        let mut parts = Vec::new();
        if self.timed_out {
            parts.push(format!(
                "drain timed out after {}",
                humantime::format_duration(timeout)
            ));
        } else {
            parts.push("drain refused".to_owned());
        }
        if !self.blockers.is_empty() {
            let pods: Vec<String> = self
                .blockers
                .iter()
                .map(|(pod, why)| format!("pod {pod}: {why}"))
                .collect();
            parts.push(pods.join("; "));
        }
        parts.join(": ")
    }
}

/// `"web-x" -n "default" (will retry ...` → `default/web-x`.
fn evicting_pod(rest: &str) -> Option<String> {
    let mut quoted = rest.split('"').skip(1).step_by(2);
    let name = quoted.next()?;
    let namespace = quoted.next()?;
    Some(format!("{namespace}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DrainOptions {
        DrainOptions {
            timeout: Duration::from_secs(90),
            force: false,
            delete_emptydir_data: false,
        }
    }

    #[test]
    fn command_always_ignores_daemonsets_and_quotes_the_node() {
        assert_eq!(
            options().command("agent-1"),
            "k3s kubectl drain agent-1 --ignore-daemonsets --timeout=90s"
        );
        let all = DrainOptions {
            force: true,
            delete_emptydir_data: true,
            ..options()
        };
        assert_eq!(
            all.command("we'ird"),
            "k3s kubectl drain 'we'\\''ird' --ignore-daemonsets --delete-emptydir-data --force --timeout=90s"
        );
        assert_eq!(all.exec_timeout(), Duration::from_secs(120));
        assert_eq!(
            all.describe(),
            "drain (timeout 1m 30s, --force, --delete-emptydir-data)"
        );
        assert_eq!(uncordon_command("a1"), "k3s kubectl uncordon a1");
    }

    #[test]
    fn budget_timeout_names_the_pod_once() {
        let stderr = "Warning: ignoring DaemonSet-managed Pods: kube-system/agentd-rxgzj\n\
error when evicting pods/\"web-9mvvp7x9jh-pxgsr\" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.\n\
error when evicting pods/\"web-9mvvp7x9jh-pxgsr\" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.\n\
There are pending pods in node \"a1\" when an error occurred: error when evicting pods/\"web-9mvvp7x9jh-pxgsr\" -n \"default\": global timeout reached: 12s\n\
pod/web-9mvvp7x9jh-pxgsr\n\
error: unable to drain node \"a1\" due to error: error when evicting pods/\"web-9mvvp7x9jh-pxgsr\" -n \"default\": global timeout reached: 12s, continuing command...\n\
There are pending nodes to be drained:\n a1\n\
error: error when evicting pods/\"web-9mvvp7x9jh-pxgsr\" -n \"default\": global timeout reached: 12s\n";
        let failure = DrainFailure::parse(stderr);
        assert!(failure.timed_out);
        assert_eq!(
            failure.blockers,
            vec![(
                "default/web-9mvvp7x9jh-pxgsr".to_owned(),
                BlockReason::DisruptionBudget
            )]
        );
        assert_eq!(
            failure.summary(Duration::from_secs(12)),
            "drain timed out after 12s: pod default/web-9mvvp7x9jh-pxgsr: eviction refused: it \
             would violate the pod's disruption budget"
        );
    }

    #[test]
    fn refusals_name_each_pod_with_its_reason() {
        let stderr = "error: unable to drain node \"a1\" due to error: [cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratch, cannot delete cannot delete Pods that declare no controller (use --force to override): default/bare, default/other], continuing command...\n\
There are pending nodes to be drained:\n a1\n\
cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratch\n\
cannot delete cannot delete Pods that declare no controller (use --force to override): default/bare, default/other\n";
        let failure = DrainFailure::parse(stderr);
        assert!(!failure.timed_out);
        assert_eq!(
            failure.blockers,
            vec![
                ("default/scratch".to_owned(), BlockReason::LocalStorage),
                ("default/bare".to_owned(), BlockReason::NoController),
                ("default/other".to_owned(), BlockReason::NoController),
            ]
        );
        assert!(
            failure
                .summary(Duration::from_secs(60))
                .starts_with("drain refused: pod default/scratch: it has emptyDir data")
        );
    }

    #[test]
    fn older_kubectl_wording_is_read_too() {
        let failure = DrainFailure::parse(
            "error: unable to drain node \"pi-1\", aborting command...\n\
             error: cannot delete Pods not managed by ReplicationController, ReplicaSet, Job, \
             DaemonSet or StatefulSet (use --force to override): default/bare\n",
        );
        assert_eq!(
            failure.blockers,
            vec![("default/bare".to_owned(), BlockReason::NoController)]
        );
    }

    #[test]
    fn a_node_missing_from_the_cluster_is_recognised() {
        let failure =
            DrainFailure::parse("Error from server (NotFound): nodes \"gone\" not found\n");
        assert!(failure.node_not_found);
        assert!(failure.blockers.is_empty());
    }
}
