//! The typed errors of one host's SSH session. Each names the host; callers branch on
//! `is_retryable()` (connection trouble) versus everything else (never retried).

use std::time::Duration;

/// Everything that can go wrong talking to one host.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// TCP connect or SSH handshake failed for a reason a later attempt may not hit.
    #[error("{host}: cannot connect to {address}: {reason}")]
    Connect {
        host: String,
        address: String,
        reason: String,
    },
    /// No answer within the connect timeout (host down, frozen or filtered).
    #[error("{host}: no SSH answer from {address} within {}", humantime::format_duration(*.after))]
    ConnectTimeout {
        host: String,
        address: String,
        after: Duration,
    },
    /// The connection broke after it was established (host rebooted, network gone).
    #[error("{host}: connection lost: {reason}")]
    Disconnected { host: String, reason: String },
    /// strict policy and the host's key is not recorded.
    #[error("{0}")]
    HostKeyUnknown(Box<UnknownHostKey>),
    /// The recorded key differs from the one offered: possible man-in-the-middle.
    #[error("{0}")]
    HostKeyChanged(Box<ChangedHostKey>),
    /// The offered key is marked `@revoked`.
    #[error("{host}: host key {key_type} {fingerprint} for {pattern} is revoked at {recorded_at}")]
    HostKeyRevoked {
        host: String,
        pattern: String,
        key_type: String,
        fingerprint: String,
        recorded_at: String,
    },
    /// A host certificate that no trusted `@cert-authority` vouches for, or that is not valid
    /// (expired, wrong principal, not a host certificate, revoked).
    #[error("{host}: host certificate for {pattern} refused: {reason}")]
    HostCertificate {
        host: String,
        pattern: String,
        reason: String,
    },
    /// accept-new could not record the key.
    #[error("{host}: cannot record the new host key in known_hosts: {reason}")]
    HostKeyLearn { host: String, reason: String },
    /// No key or agent identity was accepted.
    #[error("{host}: authentication as {user} failed ({tried})")]
    Auth {
        host: String,
        user: String,
        tried: String,
    },
    /// A private key file could not be used (missing, unreadable, wrong passphrase).
    #[error("cannot load SSH key {path}: {reason}")]
    Key { path: String, reason: String },
    /// The ssh-agent could not be used.
    #[error("ssh-agent: {0}")]
    Agent(String),
    /// Opening a channel or running a command failed at the protocol level.
    #[error("{host}: {what}: {reason}")]
    Exec {
        host: String,
        what: String,
        reason: String,
    },
    /// A command ran longer than its timeout; it was signalled and its channel closed.
    #[error("{host}: command timed out after {}", humantime::format_duration(*.after))]
    CommandTimeout { host: String, after: Duration },
    /// The run was cancelled (Ctrl-C); the remote command was signalled and its channel closed.
    #[error("{host}: cancelled")]
    Cancelled { host: String },
    /// An upload's remote script failed (the temp file is removed by the script).
    #[error("{host}: upload to {path} failed (exit {status}): {stderr}")]
    Upload {
        host: String,
        path: String,
        status: u32,
        stderr: String,
    },
    /// `sudo = "password"`: sudo did not accept the password when the session first needed root
    /// (one attempt; nothing else was sent to sudo, and no later command tries again).
    #[error("{host}: sudo refused the password: {reason}")]
    SudoRefused { host: String, reason: String },
    /// A local file to upload could not be read.
    #[error("reading {path}: {reason}")]
    LocalFile { path: String, reason: String },
}

impl SshError {
    /// Connection-level trouble a later attempt may not hit. Host-key refusals, auth failures and
    /// command failures are never retried: retrying cannot fix them and may hide an attack.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SshError::Connect { .. }
                | SshError::ConnectTimeout { .. }
                | SshError::Disconnected { .. }
        )
    }
}

/// The details of a refused unknown host key (boxed: errors stay small on the happy path).
#[derive(Debug, thiserror::Error)]
#[error(
    "{host}: host key for {pattern} is not known ({key_type} {fingerprint}); refusing to connect \
     (host_key_policy = \"strict\").\n  If you trust this key, add this line to {file}:\n  {line}"
)]
pub struct UnknownHostKey {
    pub host: String,
    pub pattern: String,
    pub key_type: String,
    pub fingerprint: String,
    /// The known_hosts line to add, ssh-keyscan style.
    pub line: String,
    pub file: String,
}

/// The details of a host key that differs from the recorded one.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host}: HOST KEY CHANGED for {pattern}: the server offers {key_type} {fingerprint}, but \
     {file}:{line} records a different key. Someone could be intercepting the connection, or \
     the host was reinstalled.\n  If the change is expected, remove line {line} of {file} \
     (ssh-keygen -R '{pattern}' -f {file}) and connect again."
)]
pub struct ChangedHostKey {
    pub host: String,
    pub pattern: String,
    pub key_type: String,
    pub fingerprint: String,
    pub file: String,
    pub line: usize,
}
