//! The one run core every fleet command uses: the hosts of a run indexed by [`HostId`], one
//! [`Engine::exec`] that logs, redacts, counts and turns an exit, a timeout or a lost connection
//! into a typed [`Failure`], one [`Engine::each`] that fans a step out under the fleet's window,
//! timeouts, reconnects and Ctrl-C grace, and the [`phase`] manager with the one dry-run gate.
//!
//! - `connect`: connecting a run's fleet with its events going to the observer.
//! - `events`: fleet connect events shown as a phase.
//! - `failure`: the failure kinds (unreachable, timed out, exited N, refused, cancelled, skipped).
//! - `remote`: what the engine needs from a host's connection (a live session, or a fake).
//! - `scripted`: the scripted fake host for unit tests of whole phase lists.
//! - `observer`: the progress events a run emits and the trait that receives them.
//! - `phase`: phases (title, pure selection, apply) and the manager that runs them in order.
//! - `runlog`: the per-host 0600 logs of a run, redacted.

pub mod connect;
pub mod events;
pub mod failure;
pub mod observer;
pub mod phase;
pub mod remote;
pub mod runlog;
pub mod scripted;

pub use events::FleetEvents;
pub use failure::{Failure, FailureKind, last_lines};
pub use phase::{Applied, Flow, Manager, Phase, PhaseRecord, PhaseResult, Step, same_line};
pub use remote::{Remote, SessionRemote};

/// One host's result of [`Engine::each`].
pub type HostResult<T> = (HostId, Result<T, Failure>);

/// A host for [`Engine::from_remotes`]: its name and its connection, or why it has none.
pub type Member = (String, Result<Arc<dyn Remote>, Failure>);

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use std::time::{Duration, Instant};

use crate::fleet::{self, Fleet, FleetSettings, HostError};
use crate::ssh::{Cancel, ExecOutput, ExecRequest};
pub use observer::{Observer, Progress, Quiet};

use runlog::RunLog;

/// A host of the run: its place in inventory order. Only the engine that made it hands it out,
/// so indexing per-host state with it cannot miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(usize);

impl HostId {
    pub fn index(self) -> usize {
        self.0
    }
}

/// Per-host values of a run, indexed by [`HostId`] (in inventory order).
#[derive(Debug, Clone)]
pub struct PerHost<T>(Vec<T>);

impl<T> PerHost<T> {
    pub fn new(values: Vec<T>) -> PerHost<T> {
        PerHost(values)
    }

    pub fn iter(&self) -> impl Iterator<Item = (HostId, &T)> {
        self.0.iter().enumerate().map(|(i, v)| (HostId(i), v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (HostId, &mut T)> {
        self.0.iter_mut().enumerate().map(|(i, v)| (HostId(i), v))
    }

    pub fn ids(&self) -> impl Iterator<Item = HostId> + use<T> {
        (0..self.0.len()).map(HostId)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Another value per host, made from each host's id and value.
    pub fn map<U>(&self, mut make: impl FnMut(HostId, &T) -> U) -> PerHost<U> {
        PerHost(self.iter().map(|(id, v)| make(id, v)).collect())
    }
}

impl<T> std::ops::Index<HostId> for PerHost<T> {
    type Output = T;
    fn index(&self, id: HostId) -> &T {
        &self.0[id.0]
    }
}

impl<T> std::ops::IndexMut<HostId> for PerHost<T> {
    fn index_mut(&mut self, id: HostId) -> &mut T {
        &mut self.0[id.0]
    }
}

/// Time and command count of one host's remote work (the report's TIME and round trips).
#[derive(Debug, Default, Clone, Copy)]
pub struct Busy {
    pub time: Duration,
    pub commands: u32,
}

/// Whether a command's output may be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Logged in full (redacted).
    Logged,
    /// Holds secrets (a token, a kubeconfig): only the exit and stderr are logged.
    Secret,
}

struct Slot {
    name: String,
    remote: Result<Arc<dyn Remote>, Failure>,
    busy: Mutex<Busy>,
}

/// The hosts of one run and the one way to run anything on them.
pub struct Engine {
    slots: Vec<Slot>,
    settings: FleetSettings,
    cancel: Cancel,
    log: RunLog,
    observer: Arc<dyn Observer>,
    /// The fleet whose sessions these are, closed at the end (`None` for fakes).
    fleet: Option<Fleet>,
}

impl Engine {
    /// The engine over a connected fleet: its hosts in inventory order.
    pub fn from_fleet(fleet: Fleet, log: RunLog, observer: Arc<dyn Observer>) -> Engine {
        let redactor = log.redactor().clone();
        let slots = fleet
            .members()
            .into_iter()
            .map(|(name, member)| Slot {
                remote: match member {
                    Ok(session) => Ok(Arc::new(SessionRemote(session)) as Arc<dyn Remote>),
                    Err(error) => Err(Failure::from_host_error(
                        "connect",
                        &HostError::Unreachable(error),
                        &redactor,
                    )),
                },
                name,
                busy: Mutex::new(Busy::default()),
            })
            .collect();
        Engine {
            slots,
            settings: fleet.settings().clone(),
            cancel: fleet.context().cancel.clone(),
            log,
            observer,
            fleet: Some(fleet),
        }
    }

    /// The engine over any remotes (the scripted fakes of unit tests); `Err`: unreachable.
    pub fn from_remotes(
        remotes: Vec<Member>,
        settings: FleetSettings,
        cancel: Cancel,
        log: RunLog,
        observer: Arc<dyn Observer>,
    ) -> Engine {
        Engine {
            slots: remotes
                .into_iter()
                .map(|(name, remote)| Slot {
                    name,
                    remote,
                    busy: Mutex::new(Busy::default()),
                })
                .collect(),
            settings,
            cancel,
            log,
            observer,
            fleet: None,
        }
    }

    /// Every host, in inventory order.
    pub fn ids(&self) -> impl Iterator<Item = HostId> + use<> {
        (0..self.slots.len()).map(HostId)
    }

    /// A value per host, made from each host's name.
    pub fn per_host<T>(&self, mut make: impl FnMut(HostId, &str) -> T) -> PerHost<T> {
        PerHost(
            self.slots
                .iter()
                .enumerate()
                .map(|(i, s)| make(HostId(i), &s.name))
                .collect(),
        )
    }

    pub fn name(&self, id: HostId) -> &str {
        &self.slots[id.0].name
    }

    pub fn id_of(&self, name: &str) -> Option<HostId> {
        self.slots.iter().position(|s| s.name == name).map(HostId)
    }

    /// Why the host has no connection, if it has none.
    pub fn unreachable(&self, id: HostId) -> Option<&Failure> {
        self.slots[id.0].remote.as_ref().err()
    }

    pub fn remote(&self, id: HostId) -> Option<&Arc<dyn Remote>> {
        self.slots[id.0].remote.as_ref().ok()
    }

    pub fn log(&self) -> &RunLog {
        &self.log
    }

    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.observer
    }

    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Time and commands spent on a host so far.
    pub fn busy(&self, id: HostId) -> Busy {
        *self.slots[id.0]
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Count one command's remote work to its host (time, one more command).
    fn record(&self, id: HostId, started: Instant) {
        let mut busy = self.slots[id.0]
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        busy.time += started.elapsed();
        busy.commands += 1;
    }

    /// Show a note while the run works.
    pub fn note(&self, text: &str) {
        self.observer.event(&Progress::Message { text });
    }

    /// Run `request` on host `id` to its end, logged (the command, then the output unless
    /// `output` is secret; redacted) and counted. `Err` only when it did not run to an end:
    /// unreachable, timed out, connection lost, cancelled.
    pub async fn exec(
        &self,
        id: HostId,
        title: &str,
        request: &ExecRequest,
        output: Output,
    ) -> Result<ExecOutput, Failure> {
        let slot = &self.slots[id.0];
        slot.remote.as_ref().map_err(Clone::clone)?;
        self.log
            .write(&slot.name, &format!("{title}: command"), &request.command);
        let result = self.counted(id, request).await?;
        let redactor = self.log.redactor();
        match result {
            Err(e) => {
                let failure = Failure::from_ssh(title, &e, redactor);
                self.log
                    .write(&slot.name, &format!("{title}: error"), &failure.reason);
                Err(failure)
            }
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                match output {
                    Output::Secret => self.log.write(
                        &slot.name,
                        &format!("{title}: {} (output holds secrets, not logged)", out.exit),
                        &stderr,
                    ),
                    Output::Logged => self.log.write(
                        &slot.name,
                        &format!("{title}: {}", out.exit),
                        &format!(
                            "--- stdout\n{}--- stderr\n{stderr}",
                            String::from_utf8_lossy(&out.stdout)
                        ),
                    ),
                }
                Ok(out)
            }
        }
    }

    /// Run `request` on host `id`, counted like [`Engine::exec`] but not logged: for steps that
    /// log what they read themselves (the facts and what rides along with them).
    pub async fn exec_unlogged(
        &self,
        id: HostId,
        title: &str,
        request: &ExecRequest,
    ) -> Result<ExecOutput, Failure> {
        let result = self.counted(id, request).await?;
        result.map_err(|e| Failure::from_ssh(title, &e, self.log.redactor()))
    }

    /// Run `request` on `id` and count it in the host's busy time; `Err` when the host is
    /// unreachable (nothing ran), else how the exec itself ended.
    async fn counted(
        &self,
        id: HostId,
        request: &ExecRequest,
    ) -> Result<Result<ExecOutput, crate::ssh::SshError>, Failure> {
        let remote = self.slots[id.0].remote.as_ref().map_err(Clone::clone)?;
        let started = Instant::now();
        let result = remote.exec(request).await;
        self.record(id, started);
        Ok(result)
    }

    /// [`Engine::exec`], and a non-zero exit is a failure too ([`FailureKind::Exited`] with the
    /// last lines of stderr as the reason).
    pub async fn run(
        &self,
        id: HostId,
        title: &str,
        request: &ExecRequest,
        output: Output,
    ) -> Result<ExecOutput, Failure> {
        let out = self.exec(id, title, request, output).await?;
        self.checked(title, out, output)
    }

    /// A command's end judged: a non-zero exit is [`FailureKind::Exited`] with the last lines
    /// of stderr as the reason (for steps that look at the output before judging the exit).
    pub fn checked(
        &self,
        title: &str,
        out: ExecOutput,
        output: Output,
    ) -> Result<ExecOutput, Failure> {
        if out.success() {
            Ok(out)
        } else {
            Err(Failure::exited(
                title,
                &out,
                output == Output::Secret,
                self.log.redactor(),
            ))
        }
    }

    /// Run `step` on each of `hosts` under the fleet's rules (sliding concurrency window, step
    /// timeout, reconnect after a reboot, Ctrl-C grace), as phase `title` for the observer.
    /// Unreachable hosts get their connect failure without running; results in `hosts` order.
    pub async fn each<T, F, Fut>(
        &self,
        title: &str,
        hosts: &[HostId],
        step: F,
    ) -> Vec<(HostId, Result<T, Failure>)>
    where
        F: Fn(HostId) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        self.each_within(title, hosts, self.settings.concurrency, step)
            .await
    }

    /// [`Engine::each`] with at most `width` hosts at once (1: one at a time).
    pub async fn each_within<T, F, Fut>(
        &self,
        title: &str,
        hosts: &[HostId],
        width: usize,
        step: F,
    ) -> Vec<(HostId, Result<T, Failure>)>
    where
        F: Fn(HostId) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        self.each_noting(title, hosts, width, step, |_, _| String::new())
            .await
    }

    /// [`Engine::each_within`], each host announced to the observer as it starts, and its
    /// success described by `done` (what it did: `installed`), as the live progress shows it.
    pub async fn each_noting<T, F, Fut>(
        &self,
        title: &str,
        hosts: &[HostId],
        width: usize,
        step: F,
        done: impl Fn(HostId, &T) -> String,
    ) -> Vec<(HostId, Result<T, Failure>)>
    where
        F: Fn(HostId) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        self.observer.event(&Progress::PhaseStart {
            phase: title,
            hosts: hosts.len(),
        });
        // Each host's future comes from an `async fn` and is windowed here, not through
        // `fleet::in_order`: an `async` block in a closure makes a phase that awaits this inside
        // its boxed `Send` future fail rustc's higher-ranked check ("implementation of `FnOnce`
        // is not general enough").
        let (step, done) = (&step, &done);
        let work = hosts
            .iter()
            .copied()
            .enumerate()
            .map(move |(i, id)| self.one(title, i, id, step, done));
        let mut done: Vec<(usize, HostResult<T>)> = futures::stream::iter(work)
            .buffer_unordered(width.min(self.settings.concurrency).max(1))
            .collect()
            .await;
        done.sort_unstable_by_key(|(i, _)| *i);
        let results = done.into_iter().map(|(_, r)| r).collect();
        self.observer.event(&Progress::PhaseEnd { phase: title });
        results
    }

    /// One host's step of [`Engine::each_within`], with its observer event.
    async fn one<T, F, Fut>(
        &self,
        title: &str,
        index: usize,
        id: HostId,
        step: &F,
        done: &impl Fn(HostId, &T) -> String,
    ) -> (usize, HostResult<T>)
    where
        F: Fn(HostId) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let redactor = self.log.redactor();
        let outcome = match &self.slots[id.0].remote {
            Err(failure) => Err(failure.clone()),
            Ok(_) if self.cancel.is_cancelled() => Err(Failure::new(
                FailureKind::Cancelled,
                format!("{title}: cancelled"),
            )),
            Ok(remote) => {
                self.observer.event(&Progress::HostStart {
                    phase: title,
                    host: &self.slots[id.0].name,
                });
                let guarded = fleet::guarded(&self.cancel, &self.settings, async {
                    remote.ready(&self.settings).await?;
                    step(id).await.map_err(|f| HostError::Step(f.into()))
                })
                .await;
                guarded.map_err(|e| Failure::from_host_error(title, &e, redactor))
            }
        };
        let said = match &outcome {
            Ok(value) => done(id, value),
            Err(failure) => failure.reason.clone(),
        };
        self.observer.event(&Progress::HostDone {
            phase: title,
            host: &self.slots[id.0].name,
            ok: outcome.is_ok(),
            detail: &said,
        });
        (index, (id, outcome))
    }

    /// Close every session (concurrently). Safe after a cancel.
    pub async fn close(&self) {
        if let Some(fleet) = &self.fleet {
            fleet.close_all().await;
        }
    }
}

#[cfg(test)]
mod tests;
