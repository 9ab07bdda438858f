//! Test scaffolding the run tests of `reset`, `restore`, `backup` and `replace` share (no tests
//! of its own): scripted hosts (`crate::engine::scripted`) with a test's own rules before each
//! run's defaults, some unreachable, in one engine; the markers that tell the shared scripts
//! apart in the journal (the lock and its release, the node list, a Node's deletion); naming a
//! call by its script.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::runlog::{Redactor, RunLog};
use crate::engine::scripted::{self, Call, Journal, Reply, ScriptedRemote};
use crate::engine::{Engine, Failure, FailureKind, Member, Observer, Remote};
use crate::fleet::FleetSettings;
use crate::ssh::Cancel;

// What identifies each script the runs share (a line only that script has).
pub const LOCK: &str = "take() {";
pub const UNLOCK: &str = "*\"$pat\"*";
pub const NODE_LIST: &str = "k3s kubectl get nodes -o json";
pub const DELETE_NODE: &str = "k3s kubectl delete node";

/// The name of the first of `markers` (a line only that script has, its name) that `call`'s
/// command holds; `other` when none does.
pub fn script_of(call: &Call, markers: &[(&str, &'static str)]) -> &'static str {
    markers
        .iter()
        .find(|(marker, _)| call.command.contains(marker))
        .map_or("other", |(_, name)| name)
}

/// A run log that writes nothing.
pub fn quiet_log() -> RunLog {
    RunLog::disabled(Redactor::default())
}

/// `reply`, late enough that hosts answering at once overlap in the journal.
pub fn slow(reply: Reply) -> Reply {
    Reply::After(Duration::from_millis(20), Box::new(reply))
}

/// An engine over the first server `s1` alone, answering `rules` (backup, replace).
pub fn first_server(journal: &Arc<Journal>, rules: Vec<(&str, Reply)>, log: RunLog) -> Engine {
    let s1 = ScriptedRemote::new("s1", journal.clone(), Cancel::default()).with_rules(rules);
    scripted::engine(vec![s1], FleetSettings::default(), Cancel::default(), log)
}

/// The scripted hosts of one test: their shared journal and Ctrl-C, the test's own rules per
/// host (asked before the run's defaults) and the hosts that cannot be reached.
pub struct Hosts {
    pub journal: Arc<Journal>,
    pub cancel: Cancel,
    /// Per host name: a command text and the reply to commands holding it.
    rules: Vec<(&'static str, &'static str, Reply)>,
    pub unreachable: Vec<&'static str>,
}

impl Hosts {
    pub fn new() -> Hosts {
        Hosts {
            journal: Journal::new(),
            cancel: Cancel::default(),
            rules: Vec::new(),
            unreachable: Vec::new(),
        }
    }

    /// `host` answers commands holding `text` with `reply` (before the defaults).
    pub fn on(&mut self, host: &'static str, text: &'static str, reply: Reply) {
        self.rules.push((host, text, reply));
    }

    /// An engine over `names` in their order: each host with the test's rules first, then the
    /// defaults `answers` adds to it; an unreachable one fails to connect. Progress goes to
    /// `observer`.
    pub fn engine(
        &self,
        names: &[&str],
        answers: impl Fn(&str, ScriptedRemote) -> ScriptedRemote,
        observer: Arc<dyn Observer>,
    ) -> Engine {
        let members: Vec<Member> = names
            .iter()
            .map(|&name| {
                if self.unreachable.contains(&name) {
                    let failure = Failure::new(
                        FailureKind::Unreachable,
                        format!("unreachable: {name}: connection refused"),
                    );
                    return (name.to_owned(), Err(failure));
                }
                let remote = ScriptedRemote::new(name, self.journal.clone(), self.cancel.clone())
                    .with_rules(
                        self.rules
                            .iter()
                            .filter(|(h, _, _)| *h == name)
                            .map(|(_, text, reply)| (*text, reply.clone())),
                    );
                let remote = answers(name, remote);
                (name.to_owned(), Ok(Arc::new(remote) as Arc<dyn Remote>))
            })
            .collect();
        Engine::from_remotes(
            members,
            FleetSettings::default(),
            self.cancel.clone(),
            quiet_log(),
            observer,
        )
    }

    /// The calls of `host`, named by their script.
    pub fn calls_of(&self, host: &str, markers: &[(&str, &'static str)]) -> Vec<&'static str> {
        self.journal
            .calls()
            .iter()
            .filter(|c| c.host == host)
            .map(|c| script_of(c, markers))
            .collect()
    }
}
