//! Unit tests of the engine over scripted hosts: typed failures, the window, limits, cancel,
//! and the manager's order, stop and dry-run gate.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::runlog::{Redactor, RunLog};
use super::scripted::{Journal, Reply, ScriptedRemote};
use super::*;

fn engine(hosts: Vec<ScriptedRemote>, settings: FleetSettings, cancel: Cancel) -> Engine {
    scripted::engine(
        hosts,
        settings,
        cancel,
        RunLog::disabled(Redactor::default()),
    )
}

fn host(name: &str, journal: &Arc<Journal>, cancel: &Cancel) -> ScriptedRemote {
    ScriptedRemote::new(name, journal.clone(), cancel.clone())
}

#[tokio::test]
async fn exec_turns_each_ending_into_its_kind() {
    let journal = Journal::new();
    let cancel = Cancel::default();
    let redactor = Redactor::default();
    redactor.add("K10secretsecretsecret");
    let e = Engine::from_remotes(
        vec![
            (
                "a".into(),
                Ok(Arc::new(
                    host("a", &journal, &cancel)
                        .on(
                            "exit3",
                            Reply::fail(3, "one\ntwo\nthree\nfour K10secretsecretsecret\n"),
                        )
                        .on("hang", Reply::Hang)
                        .on("cut", Reply::Disconnect),
                ) as Arc<dyn Remote>),
            ),
            (
                "b".into(),
                Err(Failure::new(
                    FailureKind::Unreachable,
                    "unreachable: no route",
                )),
            ),
        ],
        FleetSettings::default(),
        cancel.clone(),
        RunLog::disabled(redactor),
        Arc::new(Quiet),
    );
    let a = e.id_of("a").unwrap();
    let b = e.id_of("b").unwrap();
    let failed = e
        .run(a, "install", &ExecRequest::new("exit3"), Output::Logged)
        .await
        .unwrap_err();
    assert_eq!(failed.kind, FailureKind::Exited);
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(
        failed.reason,
        "install failed (exit 3): two | three | four [redacted]"
    );
    // `exec` runs to the end without judging the exit.
    let out = e
        .exec(a, "install", &ExecRequest::new("exit3"), Output::Logged)
        .await
        .unwrap();
    assert!(!out.success());
    let hung = e
        .run(
            a,
            "wait",
            &ExecRequest::new("hang").timeout(Duration::from_millis(50)),
            Output::Logged,
        )
        .await
        .unwrap_err();
    assert_eq!(hung.kind, FailureKind::TimedOut);
    let cut = e
        .run(a, "x", &ExecRequest::new("cut"), Output::Logged)
        .await
        .unwrap_err();
    assert_eq!(cut.kind, FailureKind::Unreachable);
    let unreachable = e
        .run(b, "x", &ExecRequest::new("true"), Output::Logged)
        .await
        .unwrap_err();
    assert_eq!(unreachable.kind, FailureKind::Unreachable);
    // Four commands reached host a and were counted; none reached b.
    assert_eq!(e.busy(a).commands, 4);
    assert_eq!(e.busy(b).commands, 0);
    assert_eq!(journal.calls().len(), 4);
}

#[tokio::test]
async fn each_keeps_the_window_and_the_order() {
    let journal = Journal::new();
    let cancel = Cancel::default();
    let hosts = (0..6)
        .map(|i| {
            host(&format!("n{i}"), &journal, &cancel).on(
                "work",
                Reply::After(Duration::from_millis(20), Box::new(Reply::ok("done"))),
            )
        })
        .collect();
    let settings = FleetSettings {
        concurrency: 2,
        ..FleetSettings::default()
    };
    let e = engine(hosts, settings, cancel);
    let ids: Vec<HostId> = e.ids().collect();
    let results = e
        .each("work", &ids, |id| {
            let e = &e;
            async move {
                e.run(id, "work", &ExecRequest::new("work"), Output::Logged)
                    .await
                    .map(|o| o.stdout_lossy())
            }
        })
        .await;
    assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), ids);
    assert!(results.iter().all(|r| r.1.as_ref().unwrap() == "done"));
    let calls = journal.calls();
    assert_eq!(
        scripted::most_at_once(&calls),
        2,
        "the window is two hosts wide"
    );
    // One at a time: no two calls overlap.
    let journal2 = Journal::new();
    let cancel2 = Cancel::default();
    let e = engine(
        (0..3)
            .map(|i| host(&format!("s{i}"), &journal2, &cancel2))
            .collect(),
        FleetSettings::default(),
        cancel2,
    );
    let ids: Vec<HostId> = e.ids().collect();
    e.each_within("roll", &ids, 1, |id| {
        let e = &e;
        async move {
            e.run(id, "roll", &ExecRequest::new("roll"), Output::Logged)
                .await
                .map(|_| ())
        }
    })
    .await;
    let calls = journal2.calls();
    assert_eq!(calls.len(), 3);
    for (i, a) in calls.iter().enumerate() {
        for b in &calls[i + 1..] {
            assert!(!a.overlaps(b), "{} and {} overlapped", a.host, b.host);
        }
    }
}

#[tokio::test]
async fn a_step_past_its_limit_or_cancelled_is_typed() {
    let journal = Journal::new();
    let cancel = Cancel::default();
    let settings = FleetSettings {
        step_timeout: Some(Duration::from_millis(50)),
        cancel_grace: Duration::from_millis(20),
        ..FleetSettings::default()
    };
    let e = engine(
        vec![host("slow", &journal, &cancel).on("sleep", Reply::Hang)],
        settings,
        cancel.clone(),
    );
    let ids: Vec<HostId> = e.ids().collect();
    let step = |id| {
        let e = &e;
        async move {
            e.run(id, "sleep", &ExecRequest::new("sleep"), Output::Logged)
                .await
                .map(|_| ())
        }
    };
    let results = e.each("sleep", &ids, step).await;
    assert_eq!(
        results[0].1.as_ref().unwrap_err().kind,
        FailureKind::TimedOut
    );
    cancel.cancel();
    let results = e.each("sleep", &ids, step).await;
    assert_eq!(
        results[0].1.as_ref().unwrap_err().kind,
        FailureKind::Cancelled
    );
}

/// A run state for manager tests: which phases applied, in order.
#[derive(Default)]
struct Trace {
    applied: Vec<&'static str>,
    hosts: Vec<HostId>,
}

struct Step {
    title: &'static str,
    changes: bool,
    stop: bool,
    select_none: bool,
}

impl Phase<Trace> for Step {
    fn title(&self) -> &'static str {
        self.title
    }
    fn select(&self, cx: &Trace) -> Vec<HostId> {
        if self.select_none {
            Vec::new()
        } else {
            cx.hosts.clone()
        }
    }
    fn changes(&self) -> bool {
        self.changes
    }
    fn apply<'a>(
        &'a self,
        cx: &'a mut Trace,
        _: &'a [HostId],
    ) -> BoxFuture<'a, anyhow::Result<Flow>> {
        Box::pin(async move {
            cx.applied.push(self.title);
            Ok(if self.stop {
                Flow::Stop(format!("{} stopped the run", self.title))
            } else {
                Flow::Continue
            })
        })
    }
}

fn step(title: &'static str, changes: bool) -> Step {
    Step {
        title,
        changes,
        stop: false,
        select_none: false,
    }
}

#[tokio::test]
async fn the_manager_runs_in_order_stops_and_gates_dry_runs() {
    let ids = PerHost::new(vec![(), ()]).ids().collect::<Vec<_>>();
    let name = |_: &Trace, id: HostId| format!("h{}", id.index());
    // A real run: in order; a stop leaves the rest not reached; empty selections do nothing.
    let mut trace = Trace {
        hosts: ids.clone(),
        ..Trace::default()
    };
    let manager = Manager::new(false)
        .then(step("facts", false))
        .then(Step {
            select_none: true,
            ..step("pi cgroups", true)
        })
        .then(Step {
            stop: true,
            ..step("first server", true)
        })
        .then(step("agents", true));
    let records = manager
        .run(&mut trace, &Cancel::default(), name)
        .await
        .unwrap();
    assert_eq!(trace.applied, ["facts", "first server"]);
    assert_eq!(records[1].result, PhaseResult::NothingToDo);
    assert_eq!(
        records[3].result,
        PhaseResult::NotReached("first server stopped the run".into())
    );
    // A dry run: read-only phases run, changing ones are planned, nothing changes.
    let mut trace = Trace {
        hosts: ids.clone(),
        ..Trace::default()
    };
    let manager = Manager::new(true)
        .then(step("facts", false))
        .then(step("install", true));
    let records = manager
        .run(&mut trace, &Cancel::default(), name)
        .await
        .unwrap();
    assert_eq!(trace.applied, ["facts"]);
    assert_eq!(
        records[1].result,
        PhaseResult::Planned(vec![
            ("h0".into(), "install".into()),
            ("h1".into(), "install".into())
        ])
    );
    // Cancelled before a phase: it and the rest are not reached.
    let cancel = Cancel::default();
    cancel.cancel();
    let mut trace = Trace {
        hosts: ids,
        ..Trace::default()
    };
    let records = Manager::new(false)
        .then(step("facts", false))
        .run(&mut trace, &cancel, name)
        .await
        .unwrap();
    assert!(trace.applied.is_empty());
    assert_eq!(
        records[0].result,
        PhaseResult::NotReached("cancelled".into())
    );
}

fn record_install<'b>(cx: &'b mut Trace, _: &'b [HostId]) -> BoxFuture<'b, anyhow::Result<Flow>> {
    Box::pin(async move {
        cx.applied.push("install");
        Ok(Flow::Continue)
    })
}

#[tokio::test]
async fn a_step_of_functions_selects_applies_and_plans_its_own_lines() {
    let ids = PerHost::new(vec![(), ()]).ids().collect::<Vec<_>>();
    let name = |_: &Trace, id: HostId| format!("h{}", id.index());
    let install = || {
        phase::Step::writes(
            "install",
            |cx: &Trace| cx.hosts[1..].to_vec(),
            record_install,
        )
        .planned(|_, hosts| same_line(hosts, "install k3s"))
    };
    let mut trace = Trace {
        hosts: ids.clone(),
        ..Trace::default()
    };
    let records = Manager::new(false)
        .then(install())
        .run(&mut trace, &Cancel::default(), name)
        .await
        .unwrap();
    assert_eq!(trace.applied, ["install"]);
    assert_eq!(records[0].hosts, 1);
    let mut trace = Trace {
        hosts: ids,
        ..Trace::default()
    };
    let records = Manager::new(true)
        .then(install())
        .run(&mut trace, &Cancel::default(), name)
        .await
        .unwrap();
    assert!(trace.applied.is_empty());
    assert_eq!(
        records[0].result,
        PhaseResult::Planned(vec![("h1".into(), "install k3s".into())])
    );
}
