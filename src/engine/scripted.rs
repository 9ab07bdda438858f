//! A scripted fake [`Remote`] for unit tests of the orchestration: each host answers commands by
//! the first rule whose text occurs in the command (default: exit 0, no output), may hang until
//! the request's timeout or the cancel, and every call is recorded in one journal shared by the
//! hosts of a test, so a test can assert order ("first server before anyone else"), overlap
//! ("servers one at a time", "agents in one window") and that `plan` changed nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::fleet::{FleetSettings, HostError};
use crate::ssh::{Cancel, ExecOutput, ExecRequest, Exit, SshError};

use super::remote::Remote;

/// How a rule answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The command ran and exited with `code`.
    Exit {
        code: u32,
        stdout: String,
        stderr: String,
    },
    /// The command never ends: it times out at the request's timeout (or `HANG_LIMIT`), or is
    /// cancelled with the run.
    Hang,
    /// The connection is lost while the command runs.
    Disconnect,
    /// Wait this long (a slow board), then answer.
    After(Duration, Box<Reply>),
}

impl Reply {
    pub fn ok(stdout: impl Into<String>) -> Reply {
        Reply::Exit {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    pub fn fail(code: u32, stderr: impl Into<String>) -> Reply {
        Reply::Exit {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }
}

/// A hung command without a timeout of its own ends after this (tests must not hang forever).
const HANG_LIMIT: Duration = Duration::from_secs(30);

/// One command a host was asked to run.
#[derive(Debug, Clone)]
pub struct Call {
    pub host: String,
    pub command: String,
    pub sudo: bool,
    pub stdin: Option<Vec<u8>>,
    /// Journal ticks when it started and ended: two calls overlapped when each started before
    /// the other ended.
    pub started: u64,
    pub ended: u64,
}

impl Call {
    pub fn overlaps(&self, other: &Call) -> bool {
        self.started < other.ended && other.started < self.ended
    }

    /// Whether it was running at the moment `other` started (a call is running at its own
    /// start).
    pub fn running_when(&self, other: &Call) -> bool {
        self.started <= other.started && other.started < self.ended
    }
}

/// The most calls running at the same moment. (Counting the calls each one overlaps is not
/// it: a long call can overlap two short ones that ran one after the other.)
pub fn most_at_once(calls: &[Call]) -> usize {
    calls
        .iter()
        .map(|c| calls.iter().filter(|o| o.running_when(c)).count())
        .max()
        .unwrap_or(0)
}

/// The calls of every host of a test, in the order they started.
#[derive(Default)]
pub struct Journal {
    tick: AtomicU64,
    calls: Mutex<Vec<Call>>,
}

impl Journal {
    pub fn new() -> Arc<Journal> {
        Arc::new(Journal::default())
    }

    fn tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::SeqCst)
    }

    /// Every finished call, in start order.
    pub fn calls(&self) -> Vec<Call> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        calls.sort_by_key(|c| c.started);
        calls
    }

    /// The finished calls whose command contains `text`, in start order.
    pub fn matching(&self, text: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.command.contains(text))
            .collect()
    }
}

struct Rule {
    contains: String,
    reply: Reply,
}

/// One fake host.
pub struct ScriptedRemote {
    name: String,
    rules: Vec<Rule>,
    journal: Arc<Journal>,
    cancel: Cancel,
}

impl ScriptedRemote {
    pub fn new(name: impl Into<String>, journal: Arc<Journal>, cancel: Cancel) -> ScriptedRemote {
        ScriptedRemote {
            name: name.into(),
            rules: Vec::new(),
            journal,
            cancel,
        }
    }

    /// Commands containing `text` get `reply` (earlier rules win).
    pub fn on(mut self, text: impl Into<String>, reply: Reply) -> ScriptedRemote {
        self.rules.push(Rule {
            contains: text.into(),
            reply,
        });
        self
    }

    /// [`ScriptedRemote::on`] for each rule, in order.
    pub fn with_rules<'a>(
        self,
        rules: impl IntoIterator<Item = (&'a str, Reply)>,
    ) -> ScriptedRemote {
        rules
            .into_iter()
            .fold(self, |remote, (text, reply)| remote.on(text, reply))
    }

    fn reply_for(&self, command: &str) -> Reply {
        self.rules
            .iter()
            .find(|r| command.contains(&r.contains))
            .map_or_else(|| Reply::ok(""), |r| r.reply.clone())
    }

    async fn answer(&self, reply: Reply, request: &ExecRequest) -> Result<ExecOutput, SshError> {
        let mut reply = reply;
        loop {
            match reply {
                Reply::After(pause, next) => {
                    if !self.wait(pause, request).await {
                        return Err(SshError::Cancelled {
                            host: self.name.clone(),
                        });
                    }
                    reply = *next;
                }
                Reply::Exit {
                    code,
                    stdout,
                    stderr,
                } => {
                    return Ok(ExecOutput {
                        stdout: stdout.into_bytes(),
                        stderr: stderr.into_bytes(),
                        exit: Exit::Status(code),
                        truncated: false,
                    });
                }
                Reply::Disconnect => {
                    return Err(SshError::Disconnected {
                        host: self.name.clone(),
                        reason: "connection reset by peer".into(),
                    });
                }
                Reply::Hang => {
                    let after = request.timeout.unwrap_or(HANG_LIMIT);
                    return if self.wait(after, request).await {
                        Err(SshError::CommandTimeout {
                            host: self.name.clone(),
                            after,
                        })
                    } else {
                        Err(SshError::Cancelled {
                            host: self.name.clone(),
                        })
                    };
                }
            }
        }
    }

    /// Sleep `pause` unless the run is cancelled first (false then), as a remote command would.
    async fn wait(&self, pause: Duration, request: &ExecRequest) -> bool {
        if request.ignore_cancel {
            tokio::time::sleep(pause).await;
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => true,
            _ = self.cancel.cancelled() => false,
        }
    }
}

impl Remote for ScriptedRemote {
    fn name(&self) -> &str {
        &self.name
    }

    fn exec<'a>(&'a self, request: &'a ExecRequest) -> BoxFuture<'a, Result<ExecOutput, SshError>> {
        Box::pin(async move {
            let started = self.journal.tick();
            if self.cancel.is_cancelled() && !request.ignore_cancel {
                return Err(SshError::Cancelled {
                    host: self.name.clone(),
                });
            }
            let result = self.answer(self.reply_for(&request.command), request).await;
            let ended = self.journal.tick();
            self.journal
                .calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Call {
                    host: self.name.clone(),
                    command: request.command.clone(),
                    sudo: request.sudo,
                    stdin: request.stdin.clone(),
                    started,
                    ended,
                });
            result
        })
    }

    fn ready<'a>(&'a self, _: &'a FleetSettings) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(async { Ok(()) })
    }
}

/// An engine over scripted hosts (no progress shown), in their order.
pub fn engine(
    hosts: Vec<ScriptedRemote>,
    settings: FleetSettings,
    cancel: Cancel,
    log: super::runlog::RunLog,
) -> super::Engine {
    let members = hosts
        .into_iter()
        .map(|h| (h.name.clone(), Ok(Arc::new(h) as Arc<dyn Remote>)))
        .collect();
    super::Engine::from_remotes(members, settings, cancel, log, Arc::new(super::Quiet))
}
