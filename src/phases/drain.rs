//! Draining one node through the first server, for every command that takes a node out of
//! service (`reset --limit`, `upgrade --drain`): run `k3s kubectl drain` on the engine (logged,
//! counted, bounded by kubectl's own `--timeout` plus [`DRAIN_GRACE`]) and turn a failure into a
//! reason that names the blocking pods. Uncordoning back is here too.

use std::time::Duration;

use crate::engine::{Engine, Failure, HostId, Output};
pub use crate::k3s::drain::DRAIN_GRACE;
use crate::k3s::drain::{DrainFailure, DrainOptions, uncordon_command};
use crate::ssh::ExecRequest;

/// Bound of `kubectl uncordon` (one API write).
const UNCORDON_TIMEOUT: Duration = Duration::from_secs(60);

/// How a drain ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Cordoned, every evictable pod gone.
    Drained,
    /// The node is not in the cluster (never joined, or already deleted): nothing to drain.
    NotInCluster,
}

/// Why a drain failed. The node stays cordoned (kubectl leaves it so); callers decide whether
/// to uncordon it back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DrainError {
    /// kubectl refused or timed out, naming the pods that kept the node busy.
    #[error("{}", failure.summary(*timeout))]
    Blocked {
        failure: DrainFailure,
        timeout: Duration,
    },
    /// The drain could not run or answered something else (SSH, API down, exec limit).
    #[error("{0}")]
    Failed(Failure),
}

/// Cordon and drain `node` from host `via` (the first server).
pub async fn drain(
    engine: &Engine,
    via: HostId,
    node: &str,
    options: &DrainOptions,
) -> Result<Drained, DrainError> {
    let request = ExecRequest::new(options.command(node))
        .sudo(true)
        .timeout(options.exec_timeout());
    let title = format!("drain {node}");
    let out = engine
        .exec(via, &title, &request, Output::Logged)
        .await
        .map_err(|mut failure| {
            failure.reason = format!(
                "{} (limit {} = --drain-timeout + {}s grace)",
                failure.reason,
                humantime::format_duration(options.exec_timeout()),
                DRAIN_GRACE.as_secs()
            );
            DrainError::Failed(failure)
        })?;
    if out.success() {
        return Ok(Drained::Drained);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failure = DrainFailure::parse(&stderr);
    if failure.node_not_found {
        return Ok(Drained::NotInCluster);
    }
    if failure.timed_out || !failure.blockers.is_empty() {
        return Err(DrainError::Blocked {
            failure,
            timeout: options.timeout,
        });
    }
    Err(DrainError::Failed(Failure::exited(
        &title,
        &out,
        false,
        engine.log().redactor(),
    )))
}

/// `kubectl uncordon NODE` from host `via`; `Err`: why not.
pub async fn uncordon(engine: &Engine, via: HostId, node: &str) -> Result<(), Failure> {
    let request = ExecRequest::new(uncordon_command(node))
        .sudo(true)
        .timeout(UNCORDON_TIMEOUT);
    engine
        .run(via, &format!("uncordon {node}"), &request, Output::Logged)
        .await
        .map(|_| ())
}
