//! One host's SSH session (russh): connect with timeouts, host-key policy, key/agent auth, exec
//! with separate stdout/stderr and exit status, sudo, atomic upload, reconnect, jump host.
//!
//! This module knows nothing of the inventory format or of k3s: callers describe a host with
//! [`ConnectOptions`] and share one [`SshContext`] (known_hosts, russh config, cancellation)
//! across all hosts of a run.

mod auth;
pub mod config;
mod error;
mod exec;
mod jumps;
pub mod known_hosts;
mod pattern;
mod scan;
mod session;

pub use auth::{Credentials, Identity, KeyStore, PassphraseSource};
pub use error::{ChangedHostKey, SshError, UnknownHostKey};
pub use exec::{ExecOutput, ExecRequest, Exit, MAX_OUTPUT_BYTES, OutputSink, Stream, shell_quote};
pub use known_hosts::KnownHosts;
pub use scan::{key_bits, key_label, scan_host_keys};
pub use session::{Session, SudoCheck, upload_request, upload_result};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::Notify;

/// What to do with a server's host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Unknown or changed key = refuse.
    Strict,
    /// Record unknown keys, refuse changed ones.
    AcceptNew,
    /// Accept any key, with a loud warning per host.
    Off,
}

/// How to run commands as root.
#[derive(Clone, Default)]
pub enum SudoMode {
    /// Run commands as the login user.
    #[default]
    None,
    /// `sudo -n`: fails fast if a password would be needed.
    Passwordless,
    /// `sudo -S` with the password alone on its own pipe (never the command's stdin, never a
    /// command line), after a first probe per session proved it (see `Session::check_sudo`);
    /// a host whose sudo does not ask gets `sudo -n` instead.
    Password(SecretString),
}

impl std::fmt::Debug for SudoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log line.
        match self {
            SudoMode::None => f.write_str("None"),
            SudoMode::Passwordless => f.write_str("Passwordless"),
            SudoMode::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// A host to hop through (ProxyJump style): the target is reached by a direct-tcpip channel.
#[derive(Debug, Clone)]
pub struct JumpOptions {
    pub address: String,
    pub port: u16,
    pub user: String,
    /// How this jump host is itself reached (the hop before it in a `ProxyJump a,b` chain).
    pub via: Option<Box<JumpOptions>>,
}

/// Everything needed to reach and log into one host.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Name used in every message (the inventory name).
    pub name: String,
    /// Address to connect to; also the name looked up in known_hosts, like OpenSSH.
    pub address: String,
    pub port: u16,
    pub user: String,
    pub credentials: Arc<Credentials>,
    pub host_key_policy: HostKeyPolicy,
    pub jump: Option<JumpOptions>,
    /// A command whose stdin/stdout carry the SSH connection (ssh_config `ProxyCommand`, tokens
    /// already expanded), run with `sh -c`. Used when there is no jump host.
    pub proxy_command: Option<String>,
    /// Limit for TCP connect plus SSH handshake plus auth.
    pub connect_timeout: Duration,
    /// Default limit for one command (an `ExecRequest` may override it).
    pub command_timeout: Duration,
    pub sudo: SudoMode,
}

/// State shared by every session of a run: one parsed known_hosts, one russh config, one
/// cancellation signal. Cloning is cheap (all `Arc`).
#[derive(Clone)]
pub struct SshContext {
    pub known_hosts: Arc<KnownHosts>,
    pub config: Arc<russh::client::Config>,
    pub cancel: Cancel,
    /// Jump-host connections, one per hop for the whole run, shared by the hosts behind them.
    pub(crate) jumps: Arc<jumps::JumpPool>,
}

impl SshContext {
    pub fn new(known_hosts: KnownHosts) -> Self {
        SshContext {
            known_hosts: Arc::new(known_hosts),
            config: Arc::new(client_config()),
            cancel: Cancel::default(),
            jumps: Arc::default(),
        }
    }
}

/// The russh client configuration shared by all connections.
pub fn client_config() -> russh::client::Config {
    let mut preferred = russh::Preferred::default();
    // curve25519 first: the post-quantum hybrid (mlkem768x25519) costs the server noticeably
    // more CPU per handshake, and at fan-out scale the servers' CPU is the bottleneck. The
    // hybrid stays in the list, so servers that only offer it still work.
    let mut kex: Vec<russh::kex::Name> = vec![russh::kex::CURVE25519];
    kex.extend(
        preferred
            .kex
            .iter()
            .copied()
            .filter(|k| *k != russh::kex::CURVE25519),
    );
    preferred.kex = kex.into();
    russh::client::Config {
        preferred,
        nodelay: true,
        // Dead peers are noticed within ~45 s even when no command is running.
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        // Small per-channel windows keep memory per host low; commands here move little data.
        window_size: 256 * 1024,
        channel_buffer_size: 32,
        ..Default::default()
    }
}

/// A run-wide cancellation signal (Ctrl-C). Running commands see it, signal their remote
/// process and close their channel.
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<CancelInner>,
}

#[derive(Default)]
struct CancelInner {
    cancelled: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once `cancel()` has been called (immediately if it already was).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}
