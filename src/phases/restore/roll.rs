//! The phases of a restore that change hosts, in order: the snapshot's bytes checked once more,
//! k3s stopped on every server, the first server reset from the snapshot, the other servers
//! re-joined one at a time (a failed one stops the roll), the agents restarted in one window.
//! Every wait is bounded by a named limit (`super::*_TIMEOUT`, `--api-timeout`,
//! `--ready-timeout`); the scripts stop what they started when theirs runs out.

use std::time::{Duration, Instant};

use crate::engine::{Applied, Engine, Failure, Flow, HostId, Output, last_lines};
use crate::k3s::snapshot;
use crate::ssh::{ExecRequest, upload_request};

use super::state::{RestoreRun, Snapshot};
use super::{RestoreOptions, SCRIPT_GRACE, STOP_TIMEOUT, UPLOAD_TIMEOUT};

fn sudo(script: String, timeout: Duration) -> ExecRequest {
    ExecRequest::new(script).sudo(true).timeout(timeout)
}

/// On the first server: wait until Node `node` is Ready (`--ready-timeout`).
fn wait_node(options: &RestoreOptions, node: &str) -> ExecRequest {
    sudo(
        snapshot::wait_node_script(node, options.ready_timeout),
        options.ready_timeout + SCRIPT_GRACE,
    )
}

/// On the first server: forget the snapshot's node password of `node` (see the script).
fn forget_password(node: &str) -> ExecRequest {
    sudo(snapshot::forget_password_script(node), STOP_TIMEOUT)
}

/// The snapshot's bytes still hash to the manifest's sha256 (the CLI checked the file before
/// any host was contacted; this is the last look before the first change). Runs in a dry run.
pub struct CheckSnapshot;

impl CheckSnapshot {
    fn mismatch(snapshot: Option<&Snapshot>) -> Option<String> {
        let Some(snapshot) = snapshot else {
            return Some("no snapshot was given".to_owned());
        };
        let found = snapshot::sha256_hex(&snapshot.bytes);
        (found != snapshot.sha256).then(|| {
            format!(
                "snapshot {}: its sha256 is {found}, the manifest says {}: refusing to restore \
                 it (nothing was changed)",
                snapshot.file, snapshot.sha256
            )
        })
    }
}

pub(super) fn check_snapshot<'b>(cx: &'b mut RestoreRun, _: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        Ok(match CheckSnapshot::mismatch(cx.snapshot.as_ref()) {
            None => Flow::Continue,
            Some(why) => {
                for id in cx.order.clone() {
                    cx.hosts[id].outcome = Some((Err(Failure::refused(&why)), Duration::ZERO));
                }
                cx.stop(why)
            }
        })
    })
}

/// k3s stopped on every server at once: etcd must not run anywhere during the reset. One that
/// cannot be stopped ends the restore before anything is restored, and the others are started
/// again.
pub(super) fn stop_servers<'b>(cx: &'b mut RestoreRun, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let started = Instant::now();
        let stop = sudo(snapshot::stop_server_script(), STOP_TIMEOUT);
        let engine = &cx.core.engine;
        let results = engine
            .each("stop servers", hosts, |id| {
                engine.run(id, "stop k3s", &stop, Output::Logged)
            })
            .await;
        if results.iter().all(|(_, r)| r.is_ok()) {
            return Ok(Flow::Continue);
        }
        // Nothing restored yet: start what was stopped again, and report.
        let stopped: Vec<HostId> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(id, _)| *id)
            .collect();
        let start = sudo(
            snapshot::START_SERVER_SCRIPT.to_owned(),
            cx.options.ready_timeout,
        );
        engine
            .each("start k3s again", &stopped, |id| {
                engine.run(id, "start k3s again", &start, Output::Logged)
            })
            .await;
        for (id, result) in results {
            let outcome = result.and_then(|_| {
                Err(Failure::skipped(
                    "not restored: another server could not be stopped (k3s started again)",
                ))
            });
            cx.hosts[id].outcome = Some((outcome.map(|()| String::new()), started.elapsed()));
        }
        Ok(cx.stop("a server could not be stopped (k3s started again)".to_owned()))
    })
}

/// The first server: upload the snapshot, `k3s server --cluster-reset
/// --cluster-reset-restore-path` (`--api-timeout`), start k3s, wait for the API and its Node.
async fn restore_first(
    engine: &Engine,
    id: HostId,
    options: &RestoreOptions,
    snapshot: &Snapshot,
    node: &str,
) -> Result<String, Failure> {
    let remote_path = snapshot::restore_upload_path(&snapshot.file);
    let upload =
        upload_request(&snapshot.bytes, &remote_path, 0o600, None, true).timeout(UPLOAD_TIMEOUT);
    engine
        .run(id, "upload the snapshot", &upload, Output::Logged)
        .await?;
    // Three waits of `--api-timeout` in the script: the reset, the start, the API.
    let reset = sudo(
        snapshot::cluster_reset_script(&remote_path, options.api_timeout),
        options.api_timeout * 3 + SCRIPT_GRACE,
    );
    let said = engine
        .run(
            id,
            "cluster reset from the snapshot",
            &reset,
            Output::Logged,
        )
        .await?;
    engine
        .run(id, "wait Ready", &wait_node(options, node), Output::Logged)
        .await?;
    Ok(format!("restored: {}", last_lines(&said.stdout_lossy(), 1)))
}

pub(super) fn first_server<'b>(cx: &'b mut RestoreRun, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let started = Instant::now();
        let Some(snapshot) = cx.snapshot.as_ref() else {
            return Ok(cx.stop("no snapshot was given".to_owned()));
        };
        let (engine, options, node) = (
            &cx.core.engine,
            &cx.options,
            &cx.hosts[cx.core.first].node_name,
        );
        let results = engine
            .each("first server", hosts, |id| {
                restore_first(engine, id, options, snapshot, node)
            })
            .await;
        let mut failed = false;
        for (id, result) in results {
            failed |= result.is_err();
            cx.hosts[id].outcome = Some((result, started.elapsed()));
        }
        Ok(if failed {
            cx.stop("the first server was not restored".to_owned())
        } else {
            Flow::Continue
        })
    })
}

/// A node that comes back after the first server: forget its old node password (through the
/// first server: a re-flashed board has a new one), run `request` on it (start k3s; bounded by
/// `--ready-timeout`), wait until its Node is Ready. What `request` printed.
async fn bring_back(
    cx: &RestoreRun,
    id: HostId,
    title: &str,
    request: ExecRequest,
) -> Result<String, Failure> {
    let (engine, options, node) = (&cx.core.engine, &cx.options, &cx.hosts[id].node_name);
    let forget = forget_password(node);
    engine
        .run(
            cx.core.first,
            "forget the old node password",
            &forget,
            Output::Logged,
        )
        .await?;
    let said = engine.run(id, title, &request, Output::Logged).await?;
    let ready = wait_node(options, node);
    engine
        .run(cx.core.first, "wait Ready", &ready, Output::Logged)
        .await?;
    Ok(said.stdout_lossy())
}

/// One other server: move its etcd data aside and start k3s, so it joins as a new member.
async fn rejoin(cx: &RestoreRun, id: HostId) -> Result<String, Failure> {
    let limit = cx.options.ready_timeout;
    let request = sudo(
        snapshot::rejoin_script(&cx.aside, limit),
        limit + SCRIPT_GRACE,
    );
    let said = bring_back(cx, id, "rejoin", request).await?;
    Ok(format!("rejoined; {}", last_lines(&said, 1)))
}

/// The other servers, one at a time: their old etcd data cannot rejoin, and etcd must keep its
/// quorum while each one joins; a server that fails stops the roll.
pub(super) fn rejoin_servers<'b>(cx: &'b mut RestoreRun, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        for &id in hosts {
            let started = Instant::now();
            let run: &RestoreRun = cx;
            let result = run
                .core
                .engine
                .each_within("servers", &[id], 1, |id| rejoin(run, id))
                .await
                .pop()
                .map_or_else(|| Err(Failure::skipped("not started")), |(_, r)| r);
            let failed = result.is_err();
            cx.hosts[id].outcome = Some((result, started.elapsed()));
            if failed {
                let name = cx.core.name(id).to_owned();
                return Ok(cx.stop(format!(
                    "server {name} did not rejoin, so the roll stopped (etcd quorum)"
                )));
            }
        }
        Ok(Flow::Continue)
    })
}

/// One agent: restart k3s-agent so it reconnects to the restored servers.
async fn restart_agent(cx: &RestoreRun, id: HostId) -> Result<(String, Duration), Failure> {
    let started = Instant::now();
    let limit = cx.options.ready_timeout;
    let request = sudo(snapshot::restart_agent_script(limit), limit + SCRIPT_GRACE);
    bring_back(cx, id, "restart k3s-agent", request).await?;
    Ok(("restarted, Ready".to_owned(), started.elapsed()))
}

/// The agents, in one window (the fleet's): restarted so they reconnect to the restored servers.
pub(super) fn restart_agents<'b>(cx: &'b mut RestoreRun, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let started = Instant::now();
        let run: &RestoreRun = cx;
        let results = run
            .core
            .engine
            .each("agents", hosts, |id| restart_agent(run, id))
            .await;
        for (id, result) in results {
            cx.hosts[id].outcome = Some(match result {
                Ok((said, took)) => (Ok(said), took),
                Err(failure) => (Err(failure), started.elapsed()),
            });
        }
        Ok(Flow::Continue)
    })
}
