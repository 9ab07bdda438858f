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
pub const NODE_LIST: &str = crate::k3s::remote::NODES_COMMAND;
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

/// The scripted hosts of one test: their names, the run's default answers and the markers
/// that name its scripts; their shared journal and Ctrl-C, the test's own rules per host (asked
/// before the defaults) and the hosts that cannot be reached.
pub struct Hosts {
    pub journal: Arc<Journal>,
    pub cancel: Cancel,
    pub unreachable: Vec<&'static str>,
    names: &'static [&'static str],
    answers: fn(&str, ScriptedRemote) -> ScriptedRemote,
    markers: &'static [(&'static str, &'static str)],
    /// Per host name: a command text and the reply to commands holding it.
    rules: Vec<(&'static str, &'static str, Reply)>,
}

impl Hosts {
    /// `names` in their order, each answering as `answers` makes it, its scripts named by
    /// `markers` (see [`script_of`]).
    pub fn new(
        names: &'static [&'static str],
        answers: fn(&str, ScriptedRemote) -> ScriptedRemote,
        markers: &'static [(&'static str, &'static str)],
    ) -> Hosts {
        Hosts {
            journal: Journal::new(),
            cancel: Cancel::default(),
            unreachable: Vec::new(),
            names,
            answers,
            markers,
            rules: Vec::new(),
        }
    }

    /// `host` answers commands holding `text` with `reply` (before the defaults).
    pub fn on(mut self, host: &'static str, text: &'static str, reply: Reply) -> Hosts {
        self.rules.push((host, text, reply));
        self
    }

    /// An engine over the hosts; an unreachable one fails to connect. Progress goes to
    /// `observer`.
    pub fn engine(&self, observer: Arc<dyn Observer>) -> Engine {
        let members: Vec<Member> = self
            .names
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
                let remote = (self.answers)(name, remote);
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

    /// Which script `call` ran.
    pub fn what(&self, call: &Call) -> &'static str {
        script_of(call, self.markers)
    }

    /// The calls of `host`, named by their script.
    pub fn calls_of(&self, host: &str) -> Vec<&'static str> {
        let calls = self.journal.calls();
        calls
            .iter()
            .filter(|c| c.host == host)
            .map(|c| self.what(c))
            .collect()
    }

    /// The calls of the script named `name`.
    pub fn calls_named(&self, name: &str) -> Vec<Call> {
        let calls = self.journal.calls();
        calls.into_iter().filter(|c| self.what(c) == name).collect()
    }

    /// `HOST<separator>SCRIPT` of every call but those of the scripts named in `skip`, in
    /// start order.
    pub fn sequence(&self, skip: &[&str], separator: &str) -> Vec<String> {
        let calls = self.journal.calls();
        calls
            .iter()
            .filter(|c| !skip.contains(&self.what(c)))
            .map(|c| format!("{}{separator}{}", c.host, self.what(c)))
            .collect()
    }
}
