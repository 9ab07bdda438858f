//! What the run engine needs from one host's connection: run a request, and come back after a
//! reboot. A live SSH [`Session`] is one; unit tests drive whole phase lists through the scripted
//! fake in `scripted` instead, without root or a lab.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::fleet::{self, FleetSettings, HostError};
use crate::ssh::{ExecOutput, ExecRequest, Session, SshError};

/// One host's connection, as the engine uses it.
pub trait Remote: Send + Sync {
    fn name(&self) -> &str;

    /// Run one request to its end (its own timeout and the run's cancel apply).
    fn exec<'a>(&'a self, request: &'a ExecRequest) -> BoxFuture<'a, Result<ExecOutput, SshError>>;

    /// Before a step: reconnect when the host went away (a reboot), with the fleet's retries.
    fn ready<'a>(&'a self, settings: &'a FleetSettings) -> BoxFuture<'a, Result<(), HostError>>;

    /// The SSH session behind it, for the few steps that stream output or need the session
    /// itself; `None` for fakes.
    fn session(&self) -> Option<Arc<Session>> {
        None
    }
}

/// A live session of the fleet.
pub struct SessionRemote(pub Arc<Session>);

impl Remote for SessionRemote {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn exec<'a>(&'a self, request: &'a ExecRequest) -> BoxFuture<'a, Result<ExecOutput, SshError>> {
        Box::pin(self.0.exec(request))
    }

    fn ready<'a>(&'a self, settings: &'a FleetSettings) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async move {
            if self.0.is_closed() {
                fleet::reconnect_with_retry(settings, &self.0).await?;
            }
            Ok(())
        })
    }

    fn session(&self) -> Option<Arc<Session>> {
        Some(self.0.clone())
    }
}
