//! What `edgeops upgrade` is asked to do (the target, batches, drain, limits) and why it may
//! refuse to start (typed: the command maps refusals to exit 2).

use std::time::Duration;

use crate::host::lock::LockError;
use crate::k3s::{Channel, JoinToken, K3sVersion};

/// What to upgrade to, before resolution.
#[derive(Debug, Clone)]
pub enum Target {
    Version(K3sVersion),
    /// Resolved once, at the inventory's `channel_url`.
    Channel(Channel),
}

#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    pub target: Target,
    /// Agents upgraded at once.
    pub batch_size: usize,
    /// Cordon and drain each node first (and uncordon it once upgraded).
    pub drain: bool,
    pub drain_timeout: Duration,
    /// Allow going to an older version.
    pub force: bool,
    /// How long one node may take to be Ready at the target after its install.
    pub ready_timeout: Duration,
    /// The join token from the inventory, if it names one (written only if it differs).
    pub token: Option<JoinToken>,
    /// Hosts to upgrade (the `--limit` selection). Other hosts of the run (the first server,
    /// always connected for the API) are only used, never changed or reported.
    pub selected: Vec<String>,
    /// `--dry-run`: read facts and nodes, decide, and report the plan; change nothing.
    pub dry_run: bool,
}

/// Why an upgrade did not start. Callers branch on these (exit code 2 for a refused downgrade).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(
        "refusing to downgrade to {target}: {} (nothing was changed; pass --force to go to an older version)",
        hosts.iter().map(|(h, v)| format!("{h} runs {v}")).collect::<Vec<_>>().join(", ")
    )]
    Downgrade {
        target: K3sVersion,
        hosts: Vec<(String, K3sVersion)>,
    },
    #[error(transparent)]
    Locked(crate::host::lock::LockHeld),
    #[error(
        "refusing to upgrade to {target} without {}: agents must not run a newer k3s than the servers \
         (upgrade the servers too, or pass --force)",
        servers.iter().map(|(n, v)| format!("server {n} ({v})")).collect::<Vec<_>>().join(", ")
    )]
    ServersBehind {
        target: K3sVersion,
        servers: Vec<(String, K3sVersion)>,
    },
    #[error("{host}: cannot take the cluster lock: {reason}")]
    Lock { host: String, reason: String },
    #[error(
        "refusing to upgrade: restarting server {server} {reason} (nothing was changed; bring the \
         down servers back or take them out with `edgeops reset --limit` first)"
    )]
    Quorum { server: String, reason: String },
    #[error("refusing to upgrade: {0} (nothing was changed)")]
    SkipsMinor(String),
    #[error("resolving k3s channel {channel}: {source}")]
    Resolve {
        channel: Channel,
        #[source]
        source: crate::k3s::ResolveError,
    },
}

/// The lock's refusals, in the words of `upgrade`'s typed errors.
impl From<LockError> for UpgradeError {
    fn from(e: LockError) -> UpgradeError {
        match e {
            LockError::Held(held) => UpgradeError::Locked(held),
            LockError::NotTaken { host, failure } => UpgradeError::Lock {
                host,
                reason: failure.reason,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downgrade_refusal_names_hosts_and_versions() {
        let err = UpgradeError::Downgrade {
            target: "v1.31.3+k3s1".parse().unwrap(),
            hosts: vec![("lab-01".into(), "v1.31.4+k3s1".parse().unwrap())],
        };
        let text = err.to_string();
        assert!(
            text.contains("refusing to downgrade to v1.31.3+k3s1"),
            "{text}"
        );
        assert!(text.contains("lab-01 runs v1.31.4+k3s1"), "{text}");
        assert!(text.contains("--force"), "{text}");
    }
}
