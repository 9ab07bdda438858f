//! The phases of `up` and `plan`, each a title, a pure selection of hosts from the run state and
//! an apply step calling the run state's methods. `mod.rs` lists their order.

use super::*;
use crate::engine::{Applied, Flow, Step};
use crate::phases::steps::{every_host, first};

/// One phase as an engine [`Step`]: `select` is pure (the run state alone); `apply` gets the
/// selection. `changes`: whether a dry run (`plan`) plans it instead of applying it. The macro
/// only lets the apply body be written inline.
macro_rules! phase {
    ($(#[$doc:meta])* $name:ident, $title:literal, changes: $changes:literal,
     select: |$cx:ident| $select:expr,
     apply: |$acx:ident, $hosts:ident| $apply:expr) => {
        $(#[$doc])*
        pub(super) fn $name<'i>() -> Step<Runner<'i>> {
            fn apply<'b>($acx: &'b mut Runner<'_>, $hosts: &'b [HostId]) -> Applied<'b> {
                Box::pin(async move { $apply })
            }
            Step {
                title: $title,
                changes: $changes,
                select: |$cx| $select,
                apply,
                plan: None,
            }
        }
    };
}

phase!(
    /// One facts round trip per host; on `up` the first server's also takes the lock.
    gather_facts, "facts", changes: false,
    select: |cx| every_host(cx),
    apply: |cx, _hosts| {
        if cx.options.mode == Mode::Up {
            cx.facts_and_lock().await?;
        } else {
            cx.gather(None).await;
        }
        Ok(Flow::Continue)
    }
);

phase!(
    /// Refusals and warnings from the facts.
    preflight, "preflight", changes: false,
    select: |cx| cx.alive_where(|_, s| s.facts.is_some()),
    apply: |cx, _hosts| {
        cx.preflight();
        Ok(Flow::Continue)
    }
);

phase!(
    /// `sudo = "password"` hosts prove their password before any secret is sent.
    sudo_check, "sudo check", changes: false,
    select: |cx| cx.password_sudo_hosts(),
    apply: |cx, hosts| {
        cx.sudo_preflight(hosts).await;
        Ok(Flow::Continue)
    }
);

phase!(
    /// A first server that is unreachable or refused stops everything else.
    first_server_gate, "first server alive", changes: false,
    select: |cx| first(cx),
    apply: |cx, _hosts| {
        if cx.hosts[cx.core.first].alive() {
            return Ok(Flow::Continue);
        }
        cx.first_server_lost("failed");
        Ok(Flow::Stop("the first server failed".to_owned()))
    }
);

phase!(
    /// One version for every node: pinned, running on the first server, or the channel's.
    resolve_version, "resolve", changes: false,
    select: |cx| first(cx),
    apply: |cx, _hosts| {
        cx.resolve_version().await?;
        Ok(Flow::Continue)
    }
);

phase!(
    /// Each live host's action from its facts (the idempotency rule).
    decide, "decide", changes: false,
    select: |cx| cx.alive_where(|_, _| true),
    apply: |cx, _hosts| {
        cx.decide_all();
        Ok(Flow::Continue)
    }
);

phase!(
    /// `plan`, after the dry-run gate planned every changing phase: what `up` would do on
    /// each host still in the run (and where an air-gapped release would come from).
    mark_planned, "plan", changes: false,
    select: |cx| if cx.options.mode == Mode::Plan { cx.alive_where(|_, _| true) } else { Vec::new() },
    apply: |cx, hosts| {
        cx.plan_airgap();
        for &id in hosts {
            cx.hosts[id].status = Some(Status::Planned);
        }
        Ok(Flow::Continue)
    }
);

phase!(
    /// Servers go up one minor at a time: a pin that skips one is refused before any change.
    skew_guard, "minor steps", changes: true,
    select: |cx| first(cx),
    apply: |cx, _hosts| {
        Ok(if cx.minor_steps_allowed().await {
            Flow::Continue
        } else {
            Flow::Stop("the pinned version skips a minor".to_owned())
        })
    }
);

phase!(
    /// The inventory's join token must be the running cluster's (or `--rotate-join-token`).
    token_guard, "join token", changes: true,
    select: |cx| first(cx),
    apply: |cx, _hosts| {
        Ok(if cx.join_token_matches().await {
            Flow::Continue
        } else {
            Flow::Stop("the join token check stopped the run".to_owned())
        })
    }
);

phase!(
    /// Restarting servers must not cost the embedded etcd its quorum.
    quorum_guard, "quorum", changes: true,
    select: |cx| first(cx),
    apply: |cx, _hosts| {
        Ok(if cx.quorum_allows_restarts().await {
            Flow::Continue
        } else {
            Flow::Stop("the embedded etcd would lose its quorum".to_owned())
        })
    }
);

phase!(
    /// Raspberry Pis: the memory cgroup flags in cmdline.txt, reboot, reconnect.
    pi_cgroups, "pi cgroups", changes: true,
    select: |cx| cx.pis_needing_cgroup(),
    apply: |cx, hosts| {
        cx.pi_cgroups(hosts).await?;
        Ok(Flow::Continue)
    }
);

phase!(
    /// Air-gapped sites: the release checked on the workstation, delivered where missing.
    airgap, "upload", changes: true,
    select: |cx| cx.airgap_hosts(),
    apply: |cx, hosts| {
        cx.airgap(hosts).await?;
        Ok(Flow::Continue)
    }
);

phase!(
    /// The first server before anyone else (its install and the API read in one exec).
    first_server, "first server", changes: true,
    select: |cx| first(cx),
    apply: |cx, _hosts| {
        if !cx.hosts[cx.core.first].alive() {
            cx.first_server_lost("failed");
            return Ok(Flow::Stop("the first server failed".to_owned()));
        }
        if !cx.hosts[cx.core.first].action().changes() || cx.first_server().await {
            Ok(Flow::Continue)
        } else {
            Ok(Flow::Stop("the first server failed".to_owned()))
        }
    }
);

phase!(
    /// The first server's API: the join token and kubeconfig (unless read with its install).
    read_api, "api", changes: true,
    select: |cx| first(cx),
    apply: |cx, _hosts| {
        Ok(if cx.read_from_api().await {
            Flow::Continue
        } else {
            Flow::Stop("the first server's API did not come up".to_owned())
        })
    }
);

phase!(
    /// The other servers, one at a time.
    servers, "servers", changes: true,
    select: |cx| cx.joining_servers(),
    apply: |cx, hosts| {
        cx.other_servers(hosts).await;
        Ok(Flow::Continue)
    }
);

phase!(
    /// The agents, in one window.
    agents, "agents", changes: true,
    select: |cx| cx.joining_agents(),
    apply: |cx, hosts| {
        cx.agents(hosts).await;
        Ok(Flow::Continue)
    }
);

phase!(
    /// The cluster's kubeconfig merged into the user's (a workstation file).
    merge_kubeconfig, "kubeconfig", changes: true,
    select: |cx| if cx.kubeconfig_text.is_some() { first(cx) } else { Vec::new() },
    apply: |cx, _hosts| {
        cx.merge_kubeconfig();
        Ok(Flow::Continue)
    }
);

phase!(
    /// Every node Ready as the inventory says, or `--ready-timeout`.
    verify, "verify", changes: true,
    select: |cx| cx.to_verify(),
    apply: |cx, hosts| {
        cx.verify(hosts).await;
        Ok(Flow::Continue)
    }
);

phase!(
    /// `[gitlab]`: the agent and runner charts on the first server (`plan`: what it would do).
    git_lab, "gitlab", changes: false,
    select: |cx| if cx.inventory.gitlab.is_some() { first(cx) } else { Vec::new() },
    apply: |cx, _hosts| {
        let step = match cx.options.mode {
            Mode::Up => GitLabStep::Up,
            Mode::Plan => GitLabStep::Plan,
        };
        cx.gitlab_phase(step).await;
        Ok(Flow::Continue)
    }
);

phase!(
    /// `status`: every host's facts; the first server's with its node list, in one exec.
    status_facts, "facts", changes: false,
    select: |cx| every_host(cx),
    apply: |cx, _hosts| {
        cx.status_nodes = cx.status_facts().await;
        Ok(Flow::Continue)
    }
);

phase!(
    /// `status`: the node table and the embedded etcd's quorum, from the first server.
    status_nodes, "nodes", changes: false,
    select: |cx| first(cx),
    apply: |cx, _hosts| {
        let read = cx.status_nodes.take();
        cx.status_nodes(read).await;
        Ok(Flow::Continue)
    }
);

phase!(
    /// `status`: the GitLab charts, when the inventory has `[gitlab]`.
    status_git_lab, "gitlab", changes: false,
    select: |cx| if cx.inventory.gitlab.is_some() { first(cx) } else { Vec::new() },
    apply: |cx, _hosts| {
        cx.gitlab_phase(GitLabStep::Status).await;
        Ok(Flow::Continue)
    }
);
