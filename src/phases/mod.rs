//! The orchestration of `up`, `plan`, `status`, `reset` and `upgrade` on the run engine
//! (`crate::engine`): each command an ordered list of small phases. `up` (`up/mod.rs` lists
//! them): facts in one round trip per host (the first server's also takes the lock), preflight,
//! one version, decisions, guards, Pi cgroups (edit cmdline.txt, reboot, reconnect), air-gap
//! upload, first server, other servers one at a time, agents in one window, kubeconfig, verify,
//! GitLab. Each phase decides per host from live facts what is needed (`decide`), and only then
//! does it through the engine; `plan` is the same list through the dry-run gate. Progress goes
//! to an [`Observer`]; drawing it is the CLI's job.
//!
//! - `airgap`: what air-gapped hosts need uploaded, checked and verified on the host.
//! - `facts`: the one-round-trip facts script and its parser.
//! - `preflight`: refusals and warnings from facts; `distro`: the distribution prerequisites.
//! - `decide`: the per-host action (the idempotency rule).
//! - `remote`: the scripts each step runs on a host (their text, and `reset_remote`'s, in `sh/*.sh`,
//!   values passed as quoted variables; secrets on stdin only); `fold`: the `up`
//!   lock taken and released inside the first server's other round trips.
//! - `lock`: what the cluster lock's answer means (taken, taken over, held by whom).
//! - `join`: the bounds of an install that starts a k3s service, and why it could not start.
//! - `gitlab`: the GitLab phase (register, write the HelmChart manifests, wait for them);
//!   `gitlab_tokens`: the tokens it keeps on the first server.
//! - `up`: `up` / `plan` / `status`; `outcome`: the per-host and cluster results; `host_status`:
//!   how a host ended (shared by every report).
//! - `reset`, `reset_remote`, `reset_outcome`: `edgeops reset` (uninstall, agents first), its
//!   host scripts and its report.
//! - `upgrade`: the rolling `edgeops upgrade`; `upgrade_plan`: its per-host decisions and order.

pub mod airgap;
pub mod decide;
pub mod distro;
pub mod facts;
pub mod fold;
pub mod gitlab;
pub mod gitlab_tokens;
pub mod host_status;
pub mod join;
pub mod lock;
pub mod outcome;
pub mod pi_memory;
pub mod preflight;
pub mod remote;
pub mod reset;
pub mod reset_gitlab;
pub mod reset_outcome;
pub mod reset_remote;
mod up;
pub mod upgrade;
pub mod upgrade_plan;

pub use outcome::{HostReport, NodeRow, RunReport, Status};
pub use up::{KubeconfigTarget, Mode, Reboot, UpOptions, fetch_kubeconfig, run, status};

/// Something the phases report while they work. Cheap, and called from many hosts at once.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A phase begins over `hosts` hosts.
    PhaseStart {
        phase: &'a str,
        hosts: usize,
    },
    /// A host starts its step of the phase.
    HostStart {
        phase: &'a str,
        host: &'a str,
    },
    /// A host is done with the phase (`detail`: what happened, or why it failed).
    HostDone {
        phase: &'a str,
        host: &'a str,
        ok: bool,
        detail: &'a str,
    },
    PhaseEnd {
        phase: &'a str,
    },
    /// A warning or note worth showing while it runs.
    Message {
        text: &'a str,
    },
}

/// Receives [`Progress`]; the CLI draws it.
pub trait Observer: Send + Sync {
    fn event(&self, event: &Progress<'_>);
}

/// Observes nothing.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: &Progress<'_>) {}
}
