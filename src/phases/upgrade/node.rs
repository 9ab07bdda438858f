//! Upgrading one node: drain it (with `--drain`), give it the air-gapped release it lacks,
//! re-run the installer at the target, wait until its node is Ready at the target, uncordon it.
//! Every remote step is bounded: the limits are named here and listed in docs/UP.md.

use crate::engine::{Failure, FailureKind, HostId, Output};
use crate::k3s::K3sVersion;
use crate::k3s::drain::uncordon_command;
use crate::k3s::install::InstallSpec;
use crate::k3s::join_watch;
use crate::k3s::remote;
use crate::phases::airgap;
use crate::ssh::{ExecRequest, Exit};

use crate::phases::steps;

use super::state::Upgrade;

/// The SSH bound of `kubectl drain` beyond its own `--timeout` (`--drain-timeout`): the round
/// trip and kubectl's own wind-down. On expiry the remote kubectl is signalled.
pub use crate::k3s::drain::DRAIN_GRACE;

/// Upgrade node `id` to `target` (the steps above). Its failure keeps the kind of the step
/// that failed; with `--drain`, the reason says the node was left cordoned.
pub(super) async fn upgrade_node(
    cx: &Upgrade,
    id: HostId,
    target: &K3sVersion,
) -> Result<(), Failure> {
    let state = &cx.hosts[id];
    let node = state.host.node_name.clone();
    let spec = state
        .spec
        .as_ref()
        .ok_or_else(|| Failure::refused("no install spec"))?;
    let left_cordoned = |mut failure: Failure| {
        if cx.options.drain {
            failure.reason = format!(
                "{} (left cordoned: `kubectl uncordon {node}` once fixed)",
                failure.reason
            );
        }
        failure
    };
    if cx.options.drain {
        drain(cx, &node).await.map_err(left_cordoned)?;
    }
    deliver(cx, id).await.map_err(left_cordoned)?;
    install(cx, id, spec).await.map_err(left_cordoned)?;
    let api = cx.core.first;
    let wait = steps::wait_node_version(
        &cx.core.engine,
        api,
        &node,
        target,
        cx.options.ready_timeout,
        cx.hosts[api].host.ssh.command_timeout,
    )
    .await;
    wait.map_err(left_cordoned)?;
    if cx.options.drain {
        let request = ExecRequest::new(uncordon_command(&node)).sudo(true);
        cx.core
            .engine
            .run(cx.core.first, "uncordon", &request, Output::Logged)
            .await?;
    }
    Ok(())
}

/// Cordon and drain `node` from the first server through the one drain module (reset uses it
/// too), bounded by `--drain-timeout` (kubectl's own) plus [`DRAIN_GRACE`]; the reason names the
/// pods that blocked it.
pub(super) async fn drain(cx: &Upgrade, node: &str) -> Result<(), Failure> {
    let options = crate::k3s::drain::DrainOptions {
        timeout: cx.options.drain_timeout,
        force: false,
        delete_emptydir_data: true,
    };
    match crate::phases::drain::drain(&cx.core.engine, cx.core.first, node, &options).await {
        Ok(_) => Ok(()),
        Err(crate::phases::drain::DrainError::Failed(failure)) => Err(failure),
        Err(blocked) => {
            let kind = match &blocked {
                crate::phases::drain::DrainError::Blocked { failure, .. } if failure.timed_out => {
                    FailureKind::TimedOut
                }
                _ => FailureKind::Refused,
            };
            Err(Failure::new(kind, format!("drain {node}: {blocked}")))
        }
    }
}

/// Air-gapped: give host `id` the target's files it lacks (checked, then each uploaded and
/// verified on the host), as `up` does, right before its install.
async fn deliver(cx: &Upgrade, id: HostId) -> Result<(), Failure> {
    let Some(artifacts) = &cx.artifacts else {
        return Ok(());
    };
    let arch = cx.hosts[id].facts.as_ref().and_then(|f| f.arch);
    airgap::deliver(&cx.core.engine, id, artifacts, arch, None).await?;
    Ok(())
}

/// The installer at the target under the host-side join watch, bounded by the host's
/// `command_timeout` + `join_timeout` + `join_watch::STOP_GRACE` (as `up`'s install).
async fn install(cx: &Upgrade, id: HostId, spec: &InstallSpec) -> Result<(), Failure> {
    let host = &cx.hosts[id].host;
    let script = join_watch::watched_install(&cx.inventory, spec, &remote::upgrade_script(spec));
    let request = ExecRequest::new(script)
        .sudo(true)
        .stdin(remote::install_stdin(cx.options.token.as_ref(), spec))
        .timeout(join_watch::install_timeout(&cx.inventory, host));
    let out = cx
        .core
        .engine
        .exec(id, "upgrade", &request, Output::Logged)
        .await?;
    if out.success() {
        return Ok(());
    }
    let redactor = cx.core.engine.log().redactor();
    // The join watch stopped the service (see `k3s::join_watch`): its explained reason.
    if out.exit == Exit::Status(join_watch::STOPPED_EXIT)
        && let Some(reason) = join_watch::stopped_reason(
            &cx.inventory,
            host,
            spec,
            &String::from_utf8_lossy(&out.stderr),
        )
    {
        let mut failure = Failure::exited("upgrade", &out, false, redactor);
        failure.reason = redactor.redact(&reason);
        return Err(failure);
    }
    Err(Failure::exited("upgrade", &out, false, redactor))
}
