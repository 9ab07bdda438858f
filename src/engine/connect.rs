//! Connecting a run's fleet with its progress going to the run's [`Observer`], so a command
//! builds its [`Engine`] without a reporter of its own (connect phase start, each host's
//! outcome, end).

use std::sync::Arc;

use super::events::FleetEvents;
use super::observer::Observer;
use crate::fleet::{Fleet, FleetSettings};
use crate::ssh::{ConnectOptions, SshContext};

use super::Engine;
use super::runlog::RunLog;

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
            Arc::new(FleetEvents(observer.clone())),
        )
        .await;
        Engine::from_fleet(fleet, log, observer)
    }
}
