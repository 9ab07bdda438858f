//! Fan-out: one live session per host, opened concurrently and kept for the whole run, and
//! async steps run over them with bounded concurrency (a sliding window, not batches), per-host
//! timeouts, connection retries with backoff, Ctrl-C cancellation and results in host order.
//! It knows nothing of what a step does.

mod progress;

pub use progress::{Event, Reporter, Silent};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::ssh::{ConnectOptions, Session, SshContext, SshError};

/// How the fleet paces its work.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// Hosts worked on at once.
    pub concurrency: usize,
    /// Connection attempts per host (first try included) for retryable errors.
    pub connect_attempts: u32,
    /// Pause before the second attempt; doubled for each later one.
    pub backoff: Duration,
    /// Limit for one step on one host (`None`: only the commands' own timeouts apply).
    pub step_timeout: Option<Duration>,
    /// How long running steps get to wind down after Ctrl-C before they are abandoned.
    pub cancel_grace: Duration,
    /// A budget shared with other fleets (several clusters' runs at once): every connection
    /// attempt and every step also holds one of its permits, so the clusters together never
    /// have more hosts at work than it allows. `None`: only `concurrency` bounds this fleet.
    pub shared_budget: Option<Arc<tokio::sync::Semaphore>>,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            concurrency: 64,
            connect_attempts: 3,
            backoff: Duration::from_millis(500),
            step_timeout: None,
            cancel_grace: Duration::from_secs(5),
            shared_budget: None,
        }
    }
}

/// Why a step produced no value on a host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The host could not be connected (after retries); steps never ran on it.
    #[error("unreachable: {0}")]
    Unreachable(Arc<SshError>),
    /// An SSH-level failure during the step.
    #[error(transparent)]
    Ssh(SshError),
    /// The step itself failed.
    #[error("{0:#}")]
    Step(anyhow::Error),
    #[error("timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("cancelled")]
    Cancelled,
}

/// What a step returns on failure: SSH errors keep their type (so callers can tell unreachable
/// from failed), anything else is an `anyhow::Error`.
#[derive(Debug)]
pub enum StepError {
    Ssh(SshError),
    Other(anyhow::Error),
}

impl From<SshError> for StepError {
    fn from(e: SshError) -> Self {
        StepError::Ssh(e)
    }
}

impl From<anyhow::Error> for StepError {
    fn from(e: anyhow::Error) -> Self {
        StepError::Other(e)
    }
}

impl From<StepError> for HostError {
    fn from(e: StepError) -> Self {
        match e {
            StepError::Ssh(SshError::Cancelled { .. }) => HostError::Cancelled,
            StepError::Ssh(e) => HostError::Ssh(e),
            StepError::Other(e) => HostError::Step(e),
        }
    }
}

/// One host's outcome of one step.
#[derive(Debug)]
pub struct HostResult<T> {
    pub host: String,
    pub outcome: Result<T, HostError>,
}

/// A host of the fleet: its live session, or why it has none.
enum Member {
    Live(Arc<Session>),
    Unreachable { name: String, error: Arc<SshError> },
}

impl Member {
    fn name(&self) -> &str {
        match self {
            Member::Live(session) => session.name(),
            Member::Unreachable { name, .. } => name,
        }
    }
}

/// A host's live session, or why it has none.
pub type SessionOrError = Result<Arc<Session>, Arc<SshError>>;

/// The hosts of a run with one session each, reused by every step.
pub struct Fleet {
    ctx: SshContext,
    settings: FleetSettings,
    reporter: Arc<dyn Reporter>,
    members: Vec<Member>,
}

impl Fleet {
    /// Connect to every host concurrently (bounded), retrying connection errors with backoff.
    /// Hosts that stay unreachable are kept, so every later result still names them.
    pub async fn connect_all(
        targets: Vec<ConnectOptions>,
        ctx: SshContext,
        settings: FleetSettings,
        reporter: Arc<dyn Reporter>,
    ) -> Fleet {
        reporter.event(&Event::Begin {
            label: "connect",
            hosts: targets.len(),
        });
        let connects = targets.into_iter().map(|opts| {
            let ctx = ctx.clone();
            let settings = &settings;
            let reporter = &reporter;
            async move {
                let name = opts.name.clone();
                let member = match connect_with_retry(opts, ctx, settings, reporter.as_ref()).await
                {
                    Ok(session) => Member::Live(Arc::new(session)),
                    Err(error) => Member::Unreachable {
                        name,
                        error: Arc::new(error),
                    },
                };
                reporter.event(&Event::Finished {
                    host: member.name(),
                    ok: matches!(member, Member::Live(_)),
                });
                member
            }
        });
        let members = in_order(connects, settings.concurrency).await;
        reporter.event(&Event::End { label: "connect" });
        Fleet {
            ctx,
            settings,
            reporter,
            members,
        }
    }

    /// Connect to every host and run `step` on each as soon as its own connection is up, in
    /// one window: no host waits for the slowest handshake before its command starts. That
    /// matters under latency, where a connect-all barrier makes every host's sshd do the same
    /// expensive step in the same round trip. For one-shot commands (`exec`); the returned
    /// fleet keeps the sessions for more steps and for `close_all`.
    pub async fn connect_and_run<T, F, Fut>(
        targets: Vec<ConnectOptions>,
        ctx: SshContext,
        settings: FleetSettings,
        reporter: Arc<dyn Reporter>,
        label: &str,
        step: F,
    ) -> (Fleet, Vec<HostResult<T>>)
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        reporter.event(&Event::Begin {
            label,
            hosts: targets.len(),
        });
        let step = &step;
        let work =
            targets.into_iter().map(|opts| {
                let ctx = ctx.clone();
                let settings = &settings;
                let reporter = &reporter;
                async move {
                    let name = opts.name.clone();
                    let (member, outcome) =
                        match connect_with_retry(opts, ctx.clone(), settings, reporter.as_ref())
                            .await
                        {
                            Ok(session) => {
                                let session = Arc::new(session);
                                let outcome = if ctx.cancel.is_cancelled() {
                                    Err(HostError::Cancelled)
                                } else {
                                    run_step(&ctx, settings, session.clone(), step).await
                                };
                                (Member::Live(session), outcome)
                            }
                            Err(error) => {
                                let error = Arc::new(error);
                                let outcome = if matches!(*error, SshError::Cancelled { .. }) {
                                    Err(HostError::Cancelled)
                                } else {
                                    Err(HostError::Unreachable(error.clone()))
                                };
                                (Member::Unreachable { name, error }, outcome)
                            }
                        };
                    reporter.event(&Event::Finished {
                        host: member.name(),
                        ok: outcome.is_ok(),
                    });
                    let result = HostResult {
                        host: member.name().to_string(),
                        outcome,
                    };
                    (member, result)
                }
            });
        let (members, results): (Vec<Member>, Vec<HostResult<T>>) =
            in_order(work, settings.concurrency)
                .await
                .into_iter()
                .unzip();
        reporter.event(&Event::End { label });
        let fleet = Fleet {
            ctx,
            settings,
            reporter,
            members,
        };
        (fleet, results)
    }

    /// Host names in inventory order.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(Member::name)
    }

    /// The live session of `host`, if it connected.
    pub fn session(&self, host: &str) -> Option<&Arc<Session>> {
        self.members.iter().find_map(|m| match m {
            Member::Live(s) if s.name() == host => Some(s),
            _ => None,
        })
    }

    /// Every host in inventory order with its live session, or the error that left it
    /// unreachable (for the run engine, which indexes them by host id).
    pub fn members(&self) -> Vec<(String, SessionOrError)> {
        self.members
            .iter()
            .map(|m| match m {
                Member::Live(session) => (session.name().to_owned(), Ok(session.clone())),
                Member::Unreachable { name, error } => (name.clone(), Err(error.clone())),
            })
            .collect()
    }

    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    pub fn context(&self) -> &SshContext {
        &self.ctx
    }

    /// Run `step` on every connected host; unreachable hosts get their connect error as result.
    /// A session found closed (the host rebooted) is reconnected first, with the same retries.
    /// Steps are not re-run after they started: they may not be safe to repeat.
    pub async fn run<T, F, Fut>(&self, label: &str, step: F) -> Vec<HostResult<T>>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        self.reporter.event(&Event::Begin {
            label,
            hosts: self.members.len(),
        });
        let cancel = &self.ctx.cancel;
        let step = &step;
        let work = self.members.iter().map(|member| async move {
            let outcome = match member {
                Member::Unreachable { error, .. }
                    if matches!(**error, SshError::Cancelled { .. }) =>
                {
                    Err(HostError::Cancelled)
                }
                Member::Unreachable { error, .. } => Err(HostError::Unreachable(error.clone())),
                Member::Live(_) if cancel.is_cancelled() => Err(HostError::Cancelled),
                Member::Live(session) => self.run_one(session.clone(), step).await,
            };
            self.reporter.event(&Event::Finished {
                host: member.name(),
                ok: outcome.is_ok(),
            });
            HostResult {
                host: member.name().to_string(),
                outcome,
            }
        });
        let results = in_order(work, self.settings.concurrency).await;
        self.reporter.event(&Event::End { label });
        results
    }

    async fn run_one<T, F, Fut>(&self, session: Arc<Session>, step: &F) -> Result<T, HostError>
    where
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        run_step(&self.ctx, &self.settings, session, step).await
    }

    /// Close every session (concurrently). Safe to call after a cancel.
    pub async fn close_all(&self) {
        let closes = self.members.iter().filter_map(|m| match m {
            Member::Live(session) => Some(session.close()),
            Member::Unreachable { .. } => None,
        });
        futures::future::join_all(closes).await;
    }
}

/// One step on one live session: reconnect first if the host went away (a reboot), then the
/// step under [`guarded`].
async fn run_step<T, F, Fut>(
    ctx: &SshContext,
    settings: &FleetSettings,
    session: Arc<Session>,
    step: &F,
) -> Result<T, HostError>
where
    F: Fn(Arc<Session>) -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    guarded(&ctx.cancel, settings, async {
        if session.is_closed() {
            reconnect_with_retry(settings, &session).await?;
        }
        step(session.clone()).await.map_err(HostError::from)
    })
    .await
}

/// The rules every step on one host runs under, whoever sends it (this fleet's `run`, or the
/// run engine's `each`): a permit of the shared budget, the step timeout, and on Ctrl-C a grace
/// period for the step to stop its remote command before it is abandoned.
pub async fn guarded<T>(
    cancel: &crate::ssh::Cancel,
    settings: &FleetSettings,
    step: impl Future<Output = Result<T, HostError>>,
) -> Result<T, HostError> {
    let limited = async {
        let _permit = shared_permit(settings).await;
        step.await
    };
    let limited = async {
        match settings.step_timeout {
            Some(limit) => tokio::time::timeout(limit, limited)
                .await
                .unwrap_or(Err(HostError::Timeout(limit))),
            None => limited.await,
        }
    };
    tokio::pin!(limited);
    tokio::select! {
        biased;
        result = &mut limited => result,
        _ = cancel.cancelled() => {
            // Commands see the cancel themselves and stop their remote processes; give
            // them a moment, then abandon the step (dropping it still stops its command).
            tokio::time::timeout(settings.cancel_grace, &mut limited)
                .await
                .unwrap_or(Err(HostError::Cancelled))
        }
    }
}

/// A permit of the shared budget, held while it lives; `None` without one.
async fn shared_permit(settings: &FleetSettings) -> Option<tokio::sync::SemaphorePermit<'_>> {
    match &settings.shared_budget {
        // The semaphore is never closed, so acquiring only waits.
        Some(budget) => budget.acquire().await.ok(),
        None => None,
    }
}

/// Reconnect a session found closed, with the fleet's connect retries as the limit.
pub async fn reconnect_with_retry(
    settings: &FleetSettings,
    session: &Session,
) -> Result<(), HostError> {
    let opts = session.options();
    let total = (opts.connect_timeout + settings.backoff) * settings.connect_attempts.max(1);
    session.reconnect(total).await.map_err(HostError::Ssh)
}

/// Run futures with at most `width` in flight, starting the next as soon as any finishes (a
/// sliding window: one slow host never holds up the others), and return results in input order.
pub async fn in_order<T>(
    work: impl Iterator<Item = impl Future<Output = T>>,
    width: usize,
) -> Vec<T> {
    // A hand-fed window rather than `stream::iter(..).map(|(i, fut)| async ..)`: a closure
    // that makes async blocks over borrowed futures is not provably `Send` (a rustc limit with
    // higher-ranked lifetimes), and the run engine's phases must be `Send`.
    let mut work = work.enumerate();
    let mut running = futures::stream::FuturesUnordered::new();
    let mut done: Vec<(usize, T)> = Vec::new();
    loop {
        while running.len() < width.max(1) {
            let Some((i, fut)) = work.next() else { break };
            running.push(futures::FutureExt::map(fut, move |v| (i, v)));
        }
        match running.next().await {
            Some(result) => done.push(result),
            None => break,
        }
    }
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, v)| v).collect()
}

async fn connect_with_retry(
    opts: ConnectOptions,
    ctx: SshContext,
    settings: &FleetSettings,
    reporter: &dyn Reporter,
) -> Result<Session, SshError> {
    let mut pause = settings.backoff;
    let mut attempt = 1;
    // `connect_timeout` bounds the whole connect of a host, retries included: a frozen host
    // costs that long, as its message says, not once per attempt.
    let limit = opts.connect_timeout;
    let give_up = tokio::time::Instant::now() + limit;
    let timed_out = || SshError::ConnectTimeout {
        host: opts.name.clone(),
        address: format!("{}:{}", opts.address, opts.port),
        after: limit,
    };
    loop {
        if ctx.cancel.is_cancelled() {
            return Err(SshError::Cancelled {
                host: opts.name.clone(),
            });
        }
        let connect = async {
            let _permit = shared_permit(settings).await;
            Session::connect(opts.clone(), ctx.clone()).await
        };
        let result = tokio::select! {
            result = tokio::time::timeout_at(give_up, connect) => {
                result.unwrap_or_else(|_| Err(timed_out()))
            }
            _ = ctx.cancel.cancelled() => Err(SshError::Cancelled { host: opts.name.clone() }),
        };
        match result {
            Ok(session) => return Ok(session),
            Err(SshError::ConnectTimeout { .. }) => return Err(timed_out()),
            Err(error)
                if error.is_retryable()
                    && attempt < settings.connect_attempts
                    && tokio::time::Instant::now() + pause < give_up =>
            {
                reporter.event(&Event::Retrying {
                    host: &opts.name,
                    attempt,
                    error: &error,
                    after: pause,
                });
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}
