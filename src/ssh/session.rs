//! A live, authenticated connection to one host, reused for every command of a run (one channel
//! per command), with host-key checking during the handshake, reconnect, and jump hosts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::PublicKeyOrCertificate;
use russh::{ChannelMsg, Disconnect, Sig};

use super::error::{ChangedHostKey, UnknownHostKey};
use super::exec::{
    MAX_OUTPUT_BYTES, PROBE_NOPASSWD, PROBE_STATUS, kill_command, sudo_probe_script, unique_tag,
    wire_command,
};
use super::known_hosts::{Verdict, fingerprint, host_pattern, known_hosts_line};
use super::{
    ConnectOptions, ExecOutput, ExecRequest, Exit, HostKeyPolicy, OutputSink, SshContext, SshError,
    Stream, SudoMode, auth, shell_quote,
};

/// How long stopping a cancelled or timed-out command may take before its channel is closed anyway.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a handshake ended early: russh's own error, or our host-key refusal (which carries the
/// message the user needs).
#[derive(Debug)]
pub(crate) enum HandshakeError {
    Protocol(russh::Error),
    Refused(SshError),
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        HandshakeError::Protocol(e)
    }
}

/// The russh handler: only host-key verification is ours.
pub(crate) struct Verifier {
    ctx: SshContext,
    name: String,
    /// The address and port as dialled; known_hosts is keyed by them.
    address: String,
    port: u16,
    policy: HostKeyPolicy,
}

impl client::Handler for Verifier {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            // Only requested when a `@cert-authority` line matches this host (see `handshake`).
            PublicKeyOrCertificate::Certificate(cert) => {
                return self
                    .check_certificate(cert)
                    .map_err(HandshakeError::Refused);
            }
        };
        let pattern = host_pattern(&self.address, self.port);
        let key_type = key.algorithm().as_str().to_string();
        let fp = fingerprint(key);
        if self.policy == HostKeyPolicy::Off {
            tracing::warn!(
                "{}: HOST KEY NOT VERIFIED ({key_type} {fp}): host_key_policy = \"off\" lets anyone \
                 who can intercept the connection impersonate this host",
                self.name
            );
            return Ok(true);
        }
        let known = &self.ctx.known_hosts;
        match known.check(&self.address, self.port, key) {
            Verdict::Known => Ok(true),
            Verdict::Changed { recorded_at } => Err(HandshakeError::Refused(
                SshError::HostKeyChanged(Box::new(ChangedHostKey {
                    host: self.name.clone(),
                    pattern,
                    key_type,
                    fingerprint: fp,
                    file: recorded_at.file.display().to_string(),
                    line: recorded_at.line,
                })),
            )),
            Verdict::Revoked { recorded_at } => {
                Err(HandshakeError::Refused(SshError::HostKeyRevoked {
                    host: self.name.clone(),
                    pattern,
                    key_type,
                    fingerprint: fp,
                    recorded_at: recorded_at.to_string(),
                }))
            }
            Verdict::Unknown { .. } if self.policy == HostKeyPolicy::AcceptNew => {
                // Known_hosts I/O is small and rare (once per new host); a blocking append here
                // keeps lines whole without an async lock.
                let file = known.learn(&self.address, self.port, key).map_err(|e| {
                    HandshakeError::Refused(SshError::HostKeyLearn {
                        host: self.name.clone(),
                        reason: e.to_string(),
                    })
                })?;
                tracing::warn!(
                    "{}: learned new host key {key_type} {fp} for {pattern} into {}",
                    self.name,
                    file.display()
                );
                Ok(true)
            }
            Verdict::Unknown { .. } => Err(HandshakeError::Refused(SshError::HostKeyUnknown(
                Box::new(UnknownHostKey {
                    host: self.name.clone(),
                    line: known_hosts_line(&self.address, self.port, key),
                    pattern,
                    key_type,
                    fingerprint: fp,
                    file: known
                        .learn_file()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "~/.ssh/known_hosts".to_string()),
                }),
            ))),
        }
    }
}

impl Verifier {
    /// A host certificate is accepted when a `@cert-authority` line for this host names its
    /// signer, it is a host certificate for this address, within its validity period, and
    /// neither its key nor its CA is `@revoked`.
    fn check_certificate(&self, cert: &russh::keys::Certificate) -> Result<bool, SshError> {
        let pattern = host_pattern(&self.address, self.port);
        let refuse = |reason: String| SshError::HostCertificate {
            host: self.name.clone(),
            pattern: pattern.clone(),
            reason,
        };
        let known = &self.ctx.known_hosts;
        let host_key = russh::keys::PublicKey::new(cert.public_key().clone(), "");
        let ca_key = russh::keys::PublicKey::new(cert.signature_key().clone(), "");
        for (what, key) in [
            ("its key", &host_key),
            ("its certificate authority", &ca_key),
        ] {
            if let Some(at) = known.revoked_at(&self.address, self.port, key) {
                return Err(refuse(format!(
                    "{what} {} is @revoked at {at}",
                    fingerprint(key)
                )));
            }
        }
        if self.policy == HostKeyPolicy::Off {
            tracing::warn!(
                "{}: HOST CERTIFICATE NOT VERIFIED: host_key_policy = \"off\"",
                self.name
            );
            return Ok(true);
        }
        let authorities = known.authorities_for(&self.address, self.port);
        let ca_fp = ca_key.fingerprint(russh::keys::HashAlg::Sha256);
        let Some(authority) = authorities
            .iter()
            .find(|a| a.key.fingerprint(russh::keys::HashAlg::Sha256) == ca_fp)
        else {
            return Err(refuse(format!(
                "signed by {ca_fp}, which no @cert-authority line for {pattern} trusts"
            )));
        };
        if cert.cert_type() != russh::keys::ssh_key::certificate::CertType::Host {
            return Err(refuse("it is not a host certificate".into()));
        }
        let principals = cert.valid_principals();
        if !principals.is_empty() && !principals.iter().any(|p| p == &self.address) {
            return Err(refuse(format!(
                "it is for {}, not {}",
                principals.join(", "),
                self.address
            )));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        cert.validate_at(now, [&ca_fp]).map_err(|e| {
            refuse(format!(
                "not valid now or badly signed ({e}; CA from {})",
                authority.origin
            ))
        })?;
        tracing::debug!(
            "{}: host certificate {} signed by {ca_fp} ({})",
            self.name,
            cert.key_id(),
            authority.origin
        );
        Ok(true)
    }
}

/// What the sudo probe of a session found (`Session::check_sudo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SudoCheck {
    /// The session's sudo mode is not `Password`: nothing to prove.
    NotNeeded,
    /// `sudo = "password"` but sudo does not ask (NOPASSWD): commands run with `sudo -n` and the
    /// password is never sent.
    NoPrompt,
    /// sudo asked and accepted the password: each privileged command gets it on its own pipe.
    PasswordAccepted,
}

/// The cached answer of the probe: refusals are cached too, so a wrong password is tried once.
type ProbeAnswer = Result<SudoCheck, String>;

/// One established connection, plus the jump-host connections or proxy command it runs through
/// (kept alive as long as the target connection is).
struct Link {
    handle: Handle<Verifier>,
    _holds: Vec<Hold>,
}

/// A live session to one host. All methods take `&self`, so one session can serve several
/// concurrent commands (each on its own channel).
pub struct Session {
    opts: ConnectOptions,
    ctx: SshContext,
    /// Swapped by `reconnect()`; commands clone the `Arc` so a swap never cuts a running command.
    link: Mutex<Arc<Link>>,
    /// The sudo probe's answer, found by the session's first privileged command.
    sudo_probe: tokio::sync::OnceCell<ProbeAnswer>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.opts.name)
            .finish()
    }
}

impl Session {
    /// Connect, verify the host key and authenticate, all within `connect_timeout`.
    pub async fn connect(opts: ConnectOptions, ctx: SshContext) -> Result<Session, SshError> {
        let link = establish(&opts, &ctx).await?;
        Ok(Session {
            opts,
            ctx,
            link: Mutex::new(Arc::new(link)),
            sudo_probe: tokio::sync::OnceCell::new(),
        })
    }

    /// With `sudo = "password"`: prove once per session, before any privileged command, that
    /// sudo accepts the password (one attempt, the password alone on the probe's stdin) and
    /// find whether it asks at all. A refusal is remembered: later privileged commands fail
    /// with the same error without another attempt.
    pub async fn check_sudo(&self) -> Result<SudoCheck, SshError> {
        let SudoMode::Password(password) = &self.opts.sudo else {
            return Ok(SudoCheck::NotNeeded);
        };
        let answer = self
            .sudo_probe
            .get_or_try_init(|| async {
                // sudo reads one line: the rest of a multi-line password would stay on the
                // stream and become the command's data.
                if secrecy::ExposeSecret::expose_secret(password).contains(['\n', '\r', '\0']) {
                    return Ok(Err(
                        "the password holds a line break or NUL, and sudo reads \
                         one line: nothing was sent"
                            .to_owned(),
                    ));
                }
                let marker = format!("[edgeops-sudo-prompt-{}]", unique_tag());
                let mut stdin = secrecy::ExposeSecret::expose_secret(password)
                    .as_bytes()
                    .to_vec();
                stdin.push(b'\n');
                let command = format!(
                    "sh -c {} edgeops-sudo-probe {}",
                    shell_quote(&sudo_probe_script()),
                    shell_quote(&marker)
                );
                let request = ExecRequest::new(command).stdin(stdin);
                // Boxed: `exec` may itself call this (for privileged commands); this request
                // is not privileged, so the recursion ends here.
                let out = Box::pin(self.exec(&request)).await?;
                let answer = probe_answer(&out, &marker);
                if answer == Ok(SudoCheck::NoPrompt) {
                    tracing::info!(
                        "{}: sudo does not ask for a password here (NOPASSWD): commands run \
                         with `sudo -n` and the password is not sent",
                        self.opts.name
                    );
                }
                Ok::<ProbeAnswer, SshError>(answer)
            })
            .await?;
        answer.clone().map_err(|reason| SshError::SudoRefused {
            host: self.opts.name.clone(),
            reason,
        })
    }

    /// The sudo mode a privileged command runs with, once the probe has spoken: a host that
    /// does not ask for the password gets `sudo -n` and never sees it.
    async fn effective_sudo(&self) -> Result<SudoMode, SshError> {
        Ok(match self.check_sudo().await? {
            SudoCheck::NoPrompt => SudoMode::Passwordless,
            SudoCheck::NotNeeded | SudoCheck::PasswordAccepted => self.opts.sudo.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.opts.name
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }

    /// True once the transport is gone (host rebooted, network broke, or `close()`).
    pub fn is_closed(&self) -> bool {
        self.current().handle.is_closed()
    }

    fn current(&self) -> Arc<Link> {
        self.link.lock().expect("session lock").clone()
    }

    /// Reconnect (after a reboot): retry until a connection succeeds or `deadline` has passed.
    /// Refusals that retrying cannot fix (host key, auth) end the wait at once.
    pub async fn reconnect(&self, deadline: Duration) -> Result<(), SshError> {
        let give_up = Instant::now() + deadline;
        let old = self.current();
        let _ = old
            .handle
            .disconnect(Disconnect::ByApplication, "reconnecting", "en")
            .await;
        let mut pause = Duration::from_millis(250);
        loop {
            match establish(&self.opts, &self.ctx).await {
                Ok(link) => {
                    *self.link.lock().expect("session lock") = Arc::new(link);
                    return Ok(());
                }
                Err(err) if err.is_retryable() && Instant::now() + pause < give_up => {
                    tracing::debug!("{}: not back yet: {err}", self.opts.name);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Close the connection politely.
    pub async fn close(&self) {
        let _ = self
            .current()
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }

    /// Run a command, collecting its output.
    pub async fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, SshError> {
        self.exec_streaming(request, &mut ()).await
    }

    /// Run a command, passing output chunks to `sink` as they arrive and collecting them too.
    /// On timeout or cancellation the remote process is sent SIGTERM and its channel closed.
    pub async fn exec_streaming(
        &self,
        request: &ExecRequest,
        sink: &mut dyn OutputSink,
    ) -> Result<ExecOutput, SshError> {
        let host = self.opts.name.clone();
        let sudo = match request.sudo {
            true => Some(self.effective_sudo().await?),
            false => None,
        };
        let link = self.current();
        let channel = link.handle.channel_open_session().await.map_err(|e| {
            if link.handle.is_closed() {
                SshError::Disconnected {
                    host: host.clone(),
                    reason: format!("cannot open a channel: {e}"),
                }
            } else {
                // The connection is fine but the server said no, most often because of sshd's
                // MaxSessions (10 concurrent channels per connection by default).
                SshError::Exec {
                    host: host.clone(),
                    what: "opening a channel".into(),
                    reason: format!("{e} (too many concurrent commands? see sshd MaxSessions)"),
                }
            }
        })?;
        let (mut reader, writer) = channel.split();
        let writer = Arc::new(writer);
        let tag = unique_tag();
        let (line, stdin_prefix) = wire_command(&request.command, sudo.as_ref(), &tag);
        // `-v`: each command per host (commands hold no secret: those travel on stdin).
        tracing::info!(
            "{host}: ${} {}",
            if request.sudo { " (sudo)" } else { "" },
            command_summary(&request.command)
        );
        let started = Instant::now();
        let exec_error = |what: &str, e: russh::Error| SshError::Exec {
            host: host.clone(),
            what: what.to_string(),
            reason: e.to_string(),
        };
        writer
            .exec(true, line)
            .await
            .map_err(|e| exec_error("sending the command", e))?;
        // From here on, an abandoned command must not outlive us on the host.
        let mut guard = KillOnDrop(Some(Stopper {
            link: link.clone(),
            writer: writer.clone(),
            tag,
            sudo,
        }));

        let feed = {
            let writer = writer.clone();
            let mut input = stdin_prefix.unwrap_or_default();
            if let Some(bytes) = &request.stdin {
                input.extend_from_slice(bytes);
            }
            async move {
                if !input.is_empty() {
                    writer.data(&input[..]).await?;
                }
                writer.eof().await
            }
        };
        let collect = async {
            let mut out = ExecOutput {
                stdout: Vec::new(),
                stderr: Vec::new(),
                exit: Exit::Unknown,
                truncated: false,
            };
            let limit = request.max_output.unwrap_or(MAX_OUTPUT_BYTES);
            let mut refused = false;
            // Pitfall: exit-status and EOF come in either order; only `None` (closed) ends it.
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        sink.output(Stream::Stdout, &data);
                        out.keep(Stream::Stdout, &data, limit);
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        sink.output(Stream::Stderr, &data);
                        out.keep(Stream::Stderr, &data, limit);
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.exit = Exit::Status(exit_status),
                    ChannelMsg::ExitSignal {
                        signal_name,
                        core_dumped,
                        error_message,
                        ..
                    } => {
                        out.exit = Exit::Signal {
                            name: signal_name_of(&signal_name),
                            core_dumped,
                            message: error_message,
                        }
                    }
                    ChannelMsg::Failure => refused = true,
                    _ => {}
                }
            }
            (out, refused)
        };
        let timeout = request.timeout.unwrap_or(self.opts.command_timeout);
        let cancel = self.ctx.cancel.clone();
        let run = async {
            let (fed, collected) = tokio::join!(feed, collect);
            (fed, collected)
        };
        let outcome = tokio::select! {
            done = tokio::time::timeout(timeout, run) => done.map_err(|_| SshError::CommandTimeout {
                host: host.clone(),
                after: timeout,
            }),
            _ = cancel.cancelled(), if !request.ignore_cancel => {
                Err(SshError::Cancelled { host: host.clone() })
            }
        };
        match &outcome {
            Ok((_, (out, _))) => tracing::info!(
                "{host}: {} after {:.1?}{}",
                out.exit,
                started.elapsed(),
                if out.truncated {
                    " (output truncated)"
                } else {
                    ""
                }
            ),
            Err(err) => tracing::info!("{host}: {err} after {:.1?}", started.elapsed()),
        }
        match outcome {
            Ok((fed, (out, refused))) => {
                guard.disarm();
                if refused {
                    return Err(SshError::Exec {
                        host,
                        what: "running the command".into(),
                        reason: "the server refused the exec request".into(),
                    });
                }
                // A feed error after the command exited (it stopped reading) is not a failure.
                if let (Err(e), Exit::Unknown) = (fed, &out.exit) {
                    return Err(exec_error("writing stdin", e));
                }
                if out.exit == Exit::Unknown && self.is_closed() {
                    return Err(SshError::Disconnected {
                        host,
                        reason: "the connection closed while the command ran".into(),
                    });
                }
                Ok(out)
            }
            Err(err) => {
                if let Some(stopper) = guard.0.take() {
                    stopper.stop().await;
                }
                Err(err)
            }
        }
    }

    /// Write `content` to `path` atomically (temp file in the same directory, then rename) with
    /// `mode` and optional `owner` (`user` or `user:group`), in one round trip: a small script
    /// reads the content from stdin. With `sudo` it can write root-owned paths.
    pub async fn upload(
        &self,
        content: &[u8],
        path: &str,
        mode: u32,
        owner: Option<&str>,
        sudo: bool,
    ) -> Result<(), SshError> {
        let request = upload_request(content, path, mode, owner, sudo);
        let out = self.exec(&request).await?;
        upload_result(&self.opts.name, path, &out)
    }

    /// Upload a local file (read once here; see `upload`).
    pub async fn upload_file(
        &self,
        local: &std::path::Path,
        path: &str,
        mode: u32,
        owner: Option<&str>,
        sudo: bool,
    ) -> Result<(), SshError> {
        let content = tokio::fs::read(local)
            .await
            .map_err(|e| SshError::LocalFile {
                path: local.display().to_string(),
                reason: e.to_string(),
            })?;
        self.upload(&content, path, mode, owner, sudo).await
    }
}

/// The one round trip that writes `content` to `path` atomically with `mode` and `owner` (see
/// [`Session::upload`]); anything that runs an [`ExecRequest`] can send it.
pub fn upload_request(
    content: &[u8],
    path: &str,
    mode: u32,
    owner: Option<&str>,
    sudo: bool,
) -> ExecRequest {
    let script = crate::shell::with_vars(
        &[
            ("dest", path),
            ("mode", &format!("{mode:o}")),
            ("owner", owner.unwrap_or("")),
        ],
        include_str!("sh/upload.sh"),
    );
    ExecRequest::new(script).sudo(sudo).stdin(content.to_vec())
}

/// What an upload's exit means: done, or [`SshError::Upload`] with its stderr.
pub fn upload_result(host: &str, path: &str, out: &ExecOutput) -> Result<(), SshError> {
    match out.exit {
        Exit::Status(0) => Ok(()),
        ref exit => Err(SshError::Upload {
            host: host.to_string(),
            path: path.to_string(),
            status: match exit {
                Exit::Status(code) => *code,
                _ => 255,
            },
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

/// Everything needed to stop one running remote command.
struct Stopper {
    link: Arc<Link>,
    writer: Arc<russh::ChannelWriteHalf<client::Msg>>,
    tag: String,
    sudo: Option<super::SudoMode>,
}

impl Stopper {
    /// Kill the command by its tag on a second channel (works for root logins and sudo too,
    /// and reaches its whole process group and tree), then signal it over its own channel
    /// (OpenSSH honours this for non-root logins) and close that channel. The kill goes first:
    /// once the tagged processes are gone, orphans they left in the group can no longer be found.
    async fn stop(self) {
        if let Ok(channel) = self.link.handle.channel_open_session().await {
            let (line, stdin) =
                wire_command(&kill_command(&self.tag), self.sudo.as_ref(), "edgeops-stop");
            let (mut reader, writer) = channel.split();
            if writer.exec(true, line).await.is_ok() {
                if let Some(stdin) = stdin {
                    let _ = writer.data(&stdin[..]).await;
                }
                let _ = writer.eof().await;
                let drain = async { while reader.wait().await.is_some() {} };
                let _ = tokio::time::timeout(STOP_TIMEOUT, drain).await;
            }
        }
        let _ = self.writer.signal(Sig::TERM).await;
        let _ = self.writer.eof().await;
        let _ = self.writer.close().await;
    }
}

/// If a command future is dropped mid-run (its caller gave up), still stop the remote process.
struct KillOnDrop(Option<Stopper>);

impl KillOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(stopper) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(stopper.stop());
        }
    }
}

/// A command as `-v` shows it: its first line (scripts are long), at most 160 characters, and
/// how many more lines it has.
fn command_summary(command: &str) -> String {
    let mut lines = command.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("").trim();
    let mut shown: String = first.chars().take(160).collect();
    if shown.len() < first.len() {
        shown.push_str("...");
    }
    match lines.count() {
        0 => shown,
        more => format!("{shown} (+{more} lines)"),
    }
}

/// Read the probe's output: accepted, not needed, or why not (sudo's own words, with the prompt
/// markers counted and removed, and control characters dropped).
fn probe_answer(out: &ExecOutput, marker: &str) -> ProbeAnswer {
    let stdout = out.stdout_lossy();
    if stdout.lines().any(|l| l == PROBE_NOPASSWD) {
        return Ok(SudoCheck::NoPrompt);
    }
    if stdout.lines().any(|l| l == format!("{PROBE_STATUS}0")) {
        return Ok(SudoCheck::PasswordAccepted);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said: Vec<String> = stderr
        .replace(marker, "\n")
        .lines()
        .map(|l| crate::sanitize::clean_line(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let said = if said.is_empty() {
        format!("no message ({})", out.exit)
    } else {
        said.join("; ")
    };
    Err(format!(
        "{said} (one attempt: the password was sent once, alone, and sudo was stopped before \
         another guess; check the variable named by sudo_password_env)"
    ))
}

fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name,
    }
    .to_string()
}

/// TCP (directly or through the jump host), handshake with host-key check, auth: within the
/// connect timeout.
async fn establish(opts: &ConnectOptions, ctx: &SshContext) -> Result<Link, SshError> {
    let address = format!("{}:{}", opts.address, opts.port);
    match tokio::time::timeout(opts.connect_timeout, establish_unbounded(opts, ctx)).await {
        Ok(result) => result,
        Err(_) => Err(SshError::ConnectTimeout {
            host: opts.name.clone(),
            address,
            after: opts.connect_timeout,
        }),
    }
}

/// What must stay alive while a connection is used: the (shared) jump-host connection its
/// tunnel runs through, or the `ProxyCommand` child carrying it. Never read: holding is the point.
#[allow(dead_code)]
pub(crate) enum Hold {
    Jump(Arc<Handle<Verifier>>),
    Child(tokio::process::Child),
}

/// The byte stream the SSH transport to a host runs over, and what keeps it alive.
pub(crate) enum Transport {
    Tcp(tokio::net::TcpStream),
    Tunnel(russh::ChannelStream<client::Msg>, Vec<Hold>),
    Command(
        tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
        Vec<Hold>,
    ),
}

/// Reach `opts`'s address and port: directly, through its jump host chain (each hop verified
/// under the same host-key policy, authenticated with the same credentials, and connected once
/// per run for every host behind it), or through its `ProxyCommand`. No SSH to the target yet.
pub(crate) async fn open_transport(
    opts: &ConnectOptions,
    ctx: &SshContext,
) -> Result<Transport, SshError> {
    if let Some(jump) = &opts.jump {
        let jump_handle = shared_hop(opts, ctx, jump).await?;
        let tunnel = jump_handle
            .channel_open_direct_tcpip(opts.address.clone(), opts.port.into(), "127.0.0.1", 0)
            .await
            .map_err(|e| SshError::Connect {
                host: opts.name.clone(),
                address: format!("{}:{} via {}", opts.address, opts.port, jump.address),
                reason: format!("the jump host cannot open a tunnel: {e}"),
            })?;
        return Ok(Transport::Tunnel(
            tunnel.into_stream(),
            vec![Hold::Jump(jump_handle)],
        ));
    }
    if let Some(command) = &opts.proxy_command {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SshError::Connect {
                host: opts.name.clone(),
                address: format!("ProxyCommand {command}"),
                reason: e.to_string(),
            })?;
        let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
            unreachable!("both pipes were requested");
        };
        return Ok(Transport::Command(
            tokio::io::join(stdout, stdin),
            vec![Hold::Child(child)],
        ));
    }
    let stream = tcp_connect(&opts.name, &opts.address, opts.port).await?;
    Ok(Transport::Tcp(stream))
}

/// Which hop connection can be shared: same place, same login, same credentials, same policy,
/// same hops before it.
fn hop_key(opts: &ConnectOptions, jump: &super::JumpOptions) -> String {
    let mut key = format!(
        "{}@{}:{}/{:p}/{:?}",
        jump.user,
        jump.address,
        jump.port,
        Arc::as_ptr(&opts.credentials),
        opts.host_key_policy
    );
    let mut via = &jump.via;
    while let Some(before) = via {
        key.push_str(&format!(
            " via {}@{}:{}",
            before.user, before.address, before.port
        ));
        via = &before.via;
    }
    key
}

/// The run's connection to one jump host (itself reached through the hop before it, if any),
/// made by the first host that needs it and shared by all.
async fn shared_hop(
    opts: &ConnectOptions,
    ctx: &SshContext,
    jump: &super::JumpOptions,
) -> Result<Arc<Handle<Verifier>>, SshError> {
    // Messages name the host that needed the hop (the first one, for a shared connection).
    let jump_name = format!("{} (jump host {})", opts.name, jump.address);
    let key = hop_key(opts, jump);
    ctx.jumps
        .get(key, &jump_name, || async {
            let verifier = Verifier {
                ctx: ctx.clone(),
                name: jump_name.clone(),
                address: jump.address.clone(),
                port: jump.port,
                policy: opts.host_key_policy,
            };
            let mut handle = match &jump.via {
                None => {
                    let stream = tcp_connect(&jump_name, &jump.address, jump.port).await?;
                    handshake(&jump_name, &jump.address, jump.port, ctx, stream, verifier).await?
                }
                Some(before) => {
                    let previous = Box::pin(shared_hop(opts, ctx, before)).await?;
                    let tunnel = previous
                        .channel_open_direct_tcpip(
                            jump.address.clone(),
                            jump.port.into(),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| SshError::Connect {
                            host: jump_name.clone(),
                            address: format!(
                                "{}:{} via {}",
                                jump.address, jump.port, before.address
                            ),
                            reason: format!("the jump host cannot open a tunnel: {e}"),
                        })?;
                    handshake(
                        &jump_name,
                        &jump.address,
                        jump.port,
                        ctx,
                        tunnel.into_stream(),
                        verifier,
                    )
                    .await?
                }
            };
            auth::authenticate(&mut handle, &jump_name, &jump.user, &opts.credentials).await?;
            Ok(handle)
        })
        .await
}

async fn establish_unbounded(opts: &ConnectOptions, ctx: &SshContext) -> Result<Link, SshError> {
    let verifier = Verifier {
        ctx: ctx.clone(),
        name: opts.name.clone(),
        address: opts.address.clone(),
        port: opts.port,
        policy: opts.host_key_policy,
    };
    let (mut handle, holds) = match open_transport(opts, ctx).await? {
        Transport::Tcp(stream) => {
            let handle =
                handshake(&opts.name, &opts.address, opts.port, ctx, stream, verifier).await?;
            (handle, Vec::new())
        }
        Transport::Tunnel(stream, holds) => {
            let handle =
                handshake(&opts.name, &opts.address, opts.port, ctx, stream, verifier).await?;
            (handle, holds)
        }
        Transport::Command(stream, holds) => {
            let handle =
                handshake(&opts.name, &opts.address, opts.port, ctx, stream, verifier).await?;
            (handle, holds)
        }
    };
    auth::authenticate(&mut handle, &opts.name, &opts.user, &opts.credentials).await?;
    Ok(Link {
        handle,
        _holds: holds,
    })
}

async fn tcp_connect(
    name: &str,
    address: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, SshError> {
    let stream = tokio::net::TcpStream::connect((address, port))
        .await
        .map_err(|e| SshError::Connect {
            host: name.to_string(),
            address: format!("{address}:{port}"),
            reason: e.to_string(),
        })?;
    // Commands are small request/response exchanges: Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn handshake<S>(
    name: &str,
    address: &str,
    port: u16,
    ctx: &SshContext,
    stream: S,
    verifier: Verifier,
) -> Result<Handle<Verifier>, SshError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Ask for host certificates only where a CA is trusted for this host, as OpenSSH does:
    // elsewhere a server with a certificate still offers its plain key.
    let config = if ctx.known_hosts.authorities_for(address, port).is_empty() {
        ctx.config.clone()
    } else {
        let mut config = super::client_config();
        config.preferred.host_key_certificates = super::scan::certificate_algorithms().into();
        Arc::new(config)
    };
    client::connect_stream(config, stream, verifier)
        .await
        .map_err(|e| match e {
            HandshakeError::Refused(refusal) => refusal,
            HandshakeError::Protocol(e) => SshError::Connect {
                host: name.to_string(),
                address: format!("{address}:{port}"),
                reason: format!("SSH handshake failed: {e}"),
            },
        })
}
