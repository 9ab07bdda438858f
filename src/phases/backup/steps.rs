//! The phases of a backup, each on the first server: `list` (k3s's `etcd-snapshot ls`), `save`
//! (`etcd-snapshot save`, then where k3s put it), `fetch` (the file copied here, 0600, its
//! sha256 in the manifest), `prune` (the newest N kept here and on the server).

use std::time::Duration;

use crate::engine::{Applied, Engine, Failure, FailureKind, Flow, HostId, Output, last_lines};
use crate::k3s::snapshot::{self, Listed};
use crate::ssh::{ExecOutput, ExecRequest};

use super::{
    BackupRun, FETCH_TIMEOUT, LIST_TIMEOUT, MAX_SNAPSHOT_BYTES, Request, SAVE_TIMEOUT, Saved,
};

/// Run a k3s script with sudo within `timeout`; a non-zero exit is a failure (the sqlite answer
/// refused with what to do instead).
async fn k3s(
    engine: &Engine,
    id: HostId,
    title: &str,
    script: String,
    timeout: Duration,
) -> Result<ExecOutput, Failure> {
    let request = ExecRequest::new(script).sudo(true).timeout(timeout);
    let out = engine.exec(id, title, &request, Output::Logged).await?;
    let said = format!(
        "{}{}",
        out.stdout_lossy(),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.success() && snapshot::is_sqlite_answer(&said) {
        return Err(Failure::refused(snapshot::SQLITE_REFUSAL));
    }
    engine.checked(title, out, Output::Logged)
}

/// k3s ran to its end but its answer cannot be used.
fn unusable(title: &str, why: String) -> Failure {
    Failure {
        kind: FailureKind::Exited,
        exit_code: Some(0),
        reason: format!("{title}: {why}"),
    }
}

/// The one host of a phase's step: its result, or why it did not run.
fn only<T>(mut results: Vec<(HostId, Result<T, Failure>)>, title: &str) -> Result<T, Failure> {
    results.pop().map_or_else(
        || Err(Failure::skipped(format!("{title}: not run"))),
        |(_, r)| r,
    )
}

/// Keep `result`'s value, or record its failure and stop the run.
fn settle<T>(cx: &mut BackupRun, result: Result<T, Failure>) -> Result<T, Flow> {
    result.map_err(|failure| {
        let why = failure.reason.clone();
        cx.outcome.failure = Some(failure);
        Flow::Stop(why)
    })
}

/// The server's snapshots.
pub(super) fn list_server<'b>(cx: &'b mut BackupRun, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let engine = &cx.core.engine;
        let script = snapshot::LIST_SCRIPT;
        let results = engine
            .each("list", hosts, |id| {
                k3s(
                    engine,
                    id,
                    "etcd-snapshot ls",
                    script.to_owned(),
                    LIST_TIMEOUT,
                )
            })
            .await;
        Ok(match settle(cx, only(results, "list")) {
            Ok(out) => {
                cx.outcome.listed = Some(snapshot::parse_list(&out.stdout_lossy()));
                Flow::Continue
            }
            Err(stop) => stop,
        })
    })
}

/// `k3s etcd-snapshot save --name NAME`, then where k3s put it (its own listing, same exec).
pub(super) fn save<'b>(cx: &'b mut BackupRun, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let Request::Save { name, .. } = &cx.request else {
            return Ok(Flow::Continue);
        };
        let script = snapshot::save_script(name);
        let engine = &cx.core.engine;
        let title = "etcd-snapshot save";
        let results = engine
            .each("save", hosts, |id| {
                k3s(engine, id, title, script.clone(), SAVE_TIMEOUT)
            })
            .await;
        let taken = only(results, "save").and_then(|out| {
            let text = out.stdout_lossy();
            let (saved, listing) = snapshot::read_save(&text);
            let file = snapshot::saved_names(saved).pop().ok_or_else(|| {
                unusable(
                    title,
                    format!(
                        "no `Snapshot NAME saved.` line in: {}",
                        last_lines(saved, 3)
                    ),
                )
            })?;
            snapshot::parse_list(listing)
                .into_iter()
                .find(|l| l.name == file)
                .ok_or_else(|| {
                    unusable(
                        title,
                        format!("snapshot {file} is not in `k3s etcd-snapshot ls`"),
                    )
                })
        });
        Ok(match settle(cx, taken) {
            Ok(taken) => {
                cx.taken = Some(taken);
                Flow::Continue
            }
            Err(stop) => stop,
        })
    })
}

/// One copy of the listed snapshot from the server, as root, never logged.
async fn fetch_snapshot(engine: &Engine, id: HostId, taken: &Listed) -> Result<Vec<u8>, Failure> {
    let title = "copying the snapshot";
    let request = ExecRequest::new(snapshot::fetch_script(&taken.path))
        .sudo(true)
        .timeout(FETCH_TIMEOUT)
        .max_output(MAX_SNAPSHOT_BYTES);
    // The snapshot holds the cluster's secrets: its bytes never reach the run log.
    let out = engine.exec(id, title, &request, Output::Secret).await?;
    if out.truncated {
        return Err(unusable(
            title,
            format!("{} is larger than {MAX_SNAPSHOT_BYTES} bytes", taken.name),
        ));
    }
    let out = engine.checked(title, out, Output::Secret)?;
    if out.stdout.len() as u64 != taken.size {
        return Err(unusable(
            title,
            format!(
                "copied {} bytes of {}, but k3s lists it with {} bytes",
                out.stdout.len(),
                taken.name,
                taken.size
            ),
        ));
    }
    Ok(out.stdout)
}

/// The snapshot copied here: its bytes as root (it is 0600 there), never logged, at most
/// [`MAX_SNAPSHOT_BYTES`], the size k3s listed; written 0600 into the 0700 folder and recorded.
pub(super) fn fetch<'b>(cx: &'b mut BackupRun, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let Some(taken) = cx.taken.clone() else {
            return Ok(Flow::Continue);
        };
        let engine = &cx.core.engine;
        let results = engine
            .each("fetch", hosts, |id| fetch_snapshot(engine, id, &taken))
            .await;
        let bytes = match settle(cx, only(results, "fetch")) {
            Ok(bytes) => bytes,
            Err(stop) => return Ok(stop),
        };
        let host = cx.core.first_name().to_owned();
        let (entry, local) = snapshot::keep_copy(&cx.dest, &cx.core.cluster, &host, taken, &bytes)?;
        cx.outcome.saved = Some(Saved {
            entry,
            local: local.display().to_string(),
        });
        Ok(Flow::Continue)
    })
}

/// Keep the newest N snapshots of the name here (files and manifest) and on the server (k3s's
/// own prune).
pub(super) fn prune<'b>(cx: &'b mut BackupRun, hosts: &'b [HostId]) -> Applied<'b> {
    Box::pin(async move {
        let Request::Save {
            name,
            prune: Some(keep),
        } = cx.request.clone()
        else {
            return Ok(Flow::Continue);
        };
        cx.outcome.pruned_local = snapshot::prune_folder(&cx.dest, keep)?;
        let script = snapshot::prune_script(&name, keep);
        let engine = &cx.core.engine;
        let results = engine
            .each("prune", hosts, |id| {
                k3s(
                    engine,
                    id,
                    "etcd-snapshot prune",
                    script.clone(),
                    LIST_TIMEOUT,
                )
            })
            .await;
        Ok(match settle(cx, only(results, "prune")) {
            Ok(out) => {
                cx.outcome.pruned_server = snapshot::pruned_names(&out.stdout_lossy());
                Flow::Continue
            }
            Err(stop) => stop,
        })
    })
}
