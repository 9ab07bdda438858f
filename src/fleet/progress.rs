//! Progress events the fleet emits while it works, and the trait that receives them. Only the
//! CLI draws anything; the fleet just reports.

use std::time::Duration;

use crate::ssh::SshError;

/// Something that happened to one host.
#[derive(Debug)]
pub enum Event<'a> {
    /// A phase (connect or a step) starts over `hosts` hosts.
    Begin { label: &'a str, hosts: usize },
    /// A connection attempt failed with a retryable error; the next one starts after `after`.
    Retrying {
        host: &'a str,
        attempt: u32,
        error: &'a SshError,
        after: Duration,
    },
    /// One host is done with the current phase.
    Finished { host: &'a str, ok: bool },
    /// Every host is done with the current phase.
    End { label: &'a str },
}

/// Receives events from many hosts at once, so it must be cheap and thread-safe.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

/// Reports nothing.
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: &Event<'_>) {}
}
