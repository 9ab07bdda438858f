//! Fleet events (connect, facts, survey) fed to a run's phase observer, so `up`, `reset` and
//! `upgrade` show the connect step like any other phase.

use std::sync::Arc;

use super::observer::{Observer, Progress};
use crate::fleet::{Event, Reporter};

/// A [`Reporter`] for `Fleet::connect_all` that forwards to a phase [`Observer`].
pub struct FleetEvents(pub Arc<dyn Observer>);

impl Reporter for FleetEvents {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Begin { label, hosts } => self.0.event(&Progress::PhaseStart {
                phase: label,
                hosts: *hosts,
            }),
            Event::Finished { host, ok } => self.0.event(&Progress::HostDone {
                phase: "",
                host,
                ok: *ok,
                detail: "",
            }),
            Event::End { label } => self.0.event(&Progress::PhaseEnd { phase: label }),
            Event::Retrying { .. } => {}
        }
    }
}
