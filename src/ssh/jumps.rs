//! Jump-host connections shared by every host behind them: one authenticated connection per hop
//! (address, port, user, credentials, policy, and the hops before it) for the whole run, which
//! carries every target's direct-tcpip channel. A fleet of 500 boards behind one bastion costs
//! the bastion one SSH handshake, not 500.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::Handle;

use super::SshError;
use super::session::Verifier;

/// How long a failed hop connection is reported to the hosts that were waiting for it, instead
/// of each trying again: shorter than the fleet's first retry backoff, so retries really retry.
const FAILURE_MEMORY: Duration = Duration::from_millis(250);

/// The shared hop connections of one run (in `SshContext`).
#[derive(Default)]
pub struct JumpPool {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

#[derive(Default)]
struct Slot {
    handle: Option<Arc<Handle<Verifier>>>,
    failure: Option<(Instant, String, String)>,
}

impl JumpPool {
    /// The live connection for `key`, or a new one from `connect` (only one caller connects;
    /// the others wait for it). A closed connection (bastion rebooted) is replaced.
    pub(crate) async fn get<F, Fut>(
        &self,
        key: String,
        name: &str,
        connect: F,
    ) -> Result<Arc<Handle<Verifier>>, SshError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Handle<Verifier>, SshError>>,
    {
        let slot = self
            .slots
            .lock()
            .expect("jump pool lock")
            .entry(key)
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(handle) = &slot.handle
            && !handle.is_closed()
        {
            return Ok(handle.clone());
        }
        if let Some((at, address, reason)) = &slot.failure
            && at.elapsed() < FAILURE_MEMORY
        {
            return Err(SshError::Connect {
                host: name.to_string(),
                address: address.clone(),
                reason: reason.clone(),
            });
        }
        match connect().await {
            Ok(handle) => {
                let handle = Arc::new(handle);
                slot.handle = Some(handle.clone());
                slot.failure = None;
                Ok(handle)
            }
            Err(err) => {
                slot.handle = None;
                if err.is_retryable() {
                    let address = match &err {
                        SshError::Connect { address, .. }
                        | SshError::ConnectTimeout { address, .. } => address.clone(),
                        _ => String::new(),
                    };
                    slot.failure = Some((Instant::now(), address, err.to_string()));
                }
                Err(err)
            }
        }
    }
}
