//! Connecting a run's fleet with its progress going to the run's [`Observer`], so a command
//! builds its [`Engine`] without a reporter of its own (connect phase start, each host's
//! outcome, end).

use std::sync::Arc;

use super::observer::{Observer, Progress};
use crate::fleet::{Event, Fleet, FleetSettings, Reporter};
use crate::ssh::{ConnectOptions, SshContext};

use super::Engine;
use super::runlog::RunLog;

/// The fleet's connect events, as the observer's phase events.
pub struct ObserverReporter(pub Arc<dyn Observer>);

impl Reporter for ObserverReporter {
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

impl Engine {
    /// Connect to every target (concurrently, with the fleet's retries) and make the engine
    /// over them; a host that could not be reached is in it as unreachable.
    pub async fn connect(
        targets: Vec<ConnectOptions>,
        ctx: SshContext,
        settings: FleetSettings,
        log: RunLog,
        observer: Arc<dyn Observer>,
    ) -> Engine {
        let fleet = Fleet::connect_all(
            targets,
            ctx,
            settings,
            Arc::new(ObserverReporter(observer.clone())),
        )
        .await;
        Engine::from_fleet(fleet, log, observer)
    }
}
