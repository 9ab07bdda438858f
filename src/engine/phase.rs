//! Phases and the manager that runs them: each phase has a title, a pure selection of the hosts
//! it acts on (unit-testable without a host), and an apply step; the manager runs an ordered list,
//! times each, stops where a phase says so or at Ctrl-C, and holds the one dry-run gate: in a dry
//! run a phase that changes hosts is asked what it would do instead of doing it.

use std::time::Instant;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::ssh::Cancel;

use super::HostId;

/// What the run does after a phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Nothing after this phase can run (the first server failed, a refusal): the reason.
    Stop(String),
}

/// One step of a command over the fleet. `C` is the command's run state (the engine and the
/// per-host state it keeps between phases).
pub trait Phase<C>: Send + Sync {
    fn title(&self) -> &'static str;

    /// The hosts this phase acts on now, from the run's state alone (no I/O): pure, so unit
    /// tests check the orchestration's choices directly. Empty: the phase is skipped.
    fn select(&self, cx: &C) -> Vec<HostId>;

    /// Whether applying it changes hosts (a dry run plans such phases instead).
    fn changes(&self) -> bool {
        true
    }

    /// Do the phase on `hosts` (the selection).
    fn apply<'a>(
        &'a self,
        cx: &'a mut C,
        hosts: &'a [HostId],
    ) -> BoxFuture<'a, anyhow::Result<Flow>>;

    /// In a dry run: what it would do on each host (one line each), recorded in the state by
    /// the phase itself when the report needs more. The default lists the title per host.
    fn plan(&self, cx: &mut C, hosts: &[HostId]) -> Vec<(HostId, String)> {
        let _ = cx;
        same_line(hosts, self.title())
    }
}

/// How a phase ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "detail")]
pub enum PhaseResult {
    Applied,
    /// Dry run: what it would do, per host name.
    Planned(Vec<(String, String)>),
    /// Its selection was empty.
    NothingToDo,
    /// An earlier phase stopped the run, or it was cancelled: why.
    NotReached(String),
}

/// One phase of a run, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRecord {
    pub phase: String,
    pub hosts: usize,
    #[serde(flatten)]
    pub result: PhaseResult,
    pub seconds: f64,
}

/// An ordered list of phases and the dry-run gate. `'p`: how long its phases may live (a
/// [`Step`] over a run state that borrows, like `up`'s, lives no longer than that borrow).
pub struct Manager<'p, C> {
    phases: Vec<Box<dyn Phase<C> + 'p>>,
    dry_run: bool,
}

impl<'p, C: Send> Manager<'p, C> {
    pub fn new(dry_run: bool) -> Manager<'p, C> {
        Manager {
            phases: Vec::new(),
            dry_run,
        }
    }

    pub fn then(mut self, phase: impl Phase<C> + 'p) -> Manager<'p, C> {
        self.phases.push(Box::new(phase));
        self
    }

    pub fn titles(&self) -> Vec<&'static str> {
        self.phases.iter().map(|p| p.title()).collect()
    }

    /// Run the phases in order. `name` names a host for the plan lines. An `Err` from a phase
    /// ends the run (the records so far are lost with it: the caller reports the error).
    pub async fn run(
        &self,
        cx: &mut C,
        cancel: &Cancel,
        name: impl Fn(&C, HostId) -> String,
    ) -> anyhow::Result<Vec<PhaseRecord>> {
        let mut records = Vec::new();
        let mut stopped: Option<String> = None;
        for phase in &self.phases {
            if stopped.is_none() && cancel.is_cancelled() {
                stopped = Some("cancelled".to_owned());
            }
            if let Some(why) = &stopped {
                records.push(PhaseRecord {
                    phase: phase.title().to_owned(),
                    hosts: 0,
                    result: PhaseResult::NotReached(why.clone()),
                    seconds: 0.0,
                });
                continue;
            }
            let hosts = phase.select(cx);
            let started = Instant::now();
            let result = if hosts.is_empty() {
                PhaseResult::NothingToDo
            } else if self.dry_run && phase.changes() {
                let lines = phase.plan(cx, &hosts);
                PhaseResult::Planned(lines.into_iter().map(|(h, l)| (name(cx, h), l)).collect())
            } else {
                if let Flow::Stop(why) = phase.apply(cx, &hosts).await? {
                    stopped = Some(why);
                }
                PhaseResult::Applied
            };
            records.push(PhaseRecord {
                phase: phase.title().to_owned(),
                hosts: hosts.len(),
                result,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        Ok(records)
    }
}

/// What applying a phase returns: its work, to be awaited (a [`Step`]'s apply function).
pub type Applied<'a> = BoxFuture<'a, anyhow::Result<Flow>>;

/// How a [`Step`] applies: a plain function of the run state and the selection.
pub type Apply<C> = for<'b> fn(&'b mut C, &'b [HostId]) -> Applied<'b>;

/// How a [`Step`] plans in a dry run (see [`Phase::plan`]).
pub type Plan<C> = fn(&mut C, &[HostId]) -> Vec<(HostId, String)>;

/// A phase made of plain functions, so a command's phase is its selection and its apply step,
/// not a type with the same trait skeleton each time.
pub struct Step<C> {
    pub title: &'static str,
    /// Whether applying it changes hosts (see [`Phase::changes`]).
    pub changes: bool,
    pub select: fn(&C) -> Vec<HostId>,
    pub apply: Apply<C>,
    /// `None`: the title per host.
    pub plan: Option<Plan<C>>,
}

impl<C> Step<C> {
    /// A read-only step: a dry run applies it too.
    pub fn reads(title: &'static str, select: fn(&C) -> Vec<HostId>, apply: Apply<C>) -> Step<C> {
        Step {
            title,
            changes: false,
            select,
            apply,
            plan: None,
        }
    }

    /// A step that changes hosts: a dry run plans it instead (the title per host, unless
    /// [`Step::planned`]).
    pub fn writes(title: &'static str, select: fn(&C) -> Vec<HostId>, apply: Apply<C>) -> Step<C> {
        Step {
            changes: true,
            ..Step::reads(title, select, apply)
        }
    }

    /// What a dry run says it would do on each host.
    pub fn planned(self, plan: Plan<C>) -> Step<C> {
        Step {
            plan: Some(plan),
            ..self
        }
    }
}

impl<C> Phase<C> for Step<C> {
    fn title(&self) -> &'static str {
        self.title
    }

    fn select(&self, cx: &C) -> Vec<HostId> {
        (self.select)(cx)
    }

    fn changes(&self) -> bool {
        self.changes
    }

    fn apply<'a>(
        &'a self,
        cx: &'a mut C,
        hosts: &'a [HostId],
    ) -> BoxFuture<'a, anyhow::Result<Flow>> {
        (self.apply)(cx, hosts)
    }

    fn plan(&self, cx: &mut C, hosts: &[HostId]) -> Vec<(HostId, String)> {
        match self.plan {
            Some(plan) => plan(cx, hosts),
            None => same_line(hosts, self.title),
        }
    }
}

/// The same plan line for every host of a selection.
pub fn same_line(hosts: &[HostId], line: &str) -> Vec<(HostId, String)> {
    hosts.iter().map(|&h| (h, line.to_owned())).collect()
}
