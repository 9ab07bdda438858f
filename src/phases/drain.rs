//! Draining one node through the first server, for every command that takes a node out of
//! service (`reset --limit`, `upgrade --drain`): run `k3s kubectl drain` bounded by its own
//! `--timeout` plus [`DRAIN_GRACE`], log it in the run log, and turn a failure into a reason
//! that names the blocking pods. Uncordoning back is here too.

use std::time::Duration;

pub use crate::k3s::drain::DRAIN_GRACE;
use crate::k3s::drain::{DrainFailure, DrainOptions, uncordon_command};
use crate::ssh::{ExecRequest, Session};

use super::outcome::last_lines;
use crate::engine::runlog::RunLog;

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
    Failed(String),
}

/// Cordon and drain `node` from `session` (the first server). `log_host`: whose run log gets
/// the command and its output.
pub async fn drain(
    session: &Session,
    node: &str,
    options: &DrainOptions,
    log: &RunLog,
    log_host: &str,
) -> Result<Drained, DrainError> {
    let request = ExecRequest::new(options.command(node))
        .sudo(true)
        .timeout(options.exec_timeout());
    log.write(log_host, "drain: command", &request.command);
    let out = session.exec(&request).await.map_err(|e| {
        let reason = log.redactor().redact(&format!(
            "drain of {node} through {}: {e} (limit {} = --drain-timeout + {}s grace)",
            session.name(),
            humantime::format_duration(options.exec_timeout()),
            DRAIN_GRACE.as_secs()
        ));
        log.write(log_host, "drain: error", &reason);
        DrainError::Failed(reason)
    })?;
    let stdout = out.stdout_lossy();
    let stderr = String::from_utf8_lossy(&out.stderr);
    log.write(
        log_host,
        &format!("drain: {}", out.exit),
        &format!("--- stdout\n{stdout}--- stderr\n{stderr}"),
    );
    if out.success() {
        return Ok(Drained::Drained);
    }
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
    Err(DrainError::Failed(log.redactor().redact(&format!(
        "drain failed ({}): {}",
        out.exit,
        last_lines(&stderr, 3)
    ))))
}

/// `kubectl uncordon NODE` from `session`; `Err`: why not.
pub async fn uncordon(
    session: &Session,
    node: &str,
    log: &RunLog,
    log_host: &str,
) -> Result<(), String> {
    let request = ExecRequest::new(uncordon_command(node))
        .sudo(true)
        .timeout(UNCORDON_TIMEOUT);
    log.write(log_host, "uncordon: command", &request.command);
    match session.exec(&request).await {
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            log.write(
                log_host,
                &format!("uncordon: {}", out.exit),
                &format!("--- stdout\n{}--- stderr\n{stderr}", out.stdout_lossy()),
            );
            if out.success() {
                Ok(())
            } else {
                Err(format!(
                    "uncordon failed ({}): {}",
                    out.exit,
                    last_lines(&stderr, 2)
                ))
            }
        }
        Err(e) => Err(format!("uncordon: {e}")),
    }
}
