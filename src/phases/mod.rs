//! Every command's orchestration on the run engine (`crate::engine`): each an ordered list of
//! small phases over a [`run_core::RunCore`] (the engine, the first server, the cluster lock,
//! notes, phase records). `up` (`up/mod.rs` lists them): facts in one round trip per host (the
//! first server's also takes the lock), preflight, one version, decisions, guards, Pi cgroups
//! (edit cmdline.txt, reboot, reconnect), air-gap upload, first server, other servers one at a
//! time, agents in one window, kubeconfig, verify, GitLab. Each phase decides per host from live
//! facts (`crate::host`) what is needed (`decide`), and only then does it through the engine;
//! `plan` is the same list through the dry-run gate. Progress goes to an [`Observer`]; drawing
//! it is the CLI's job.
//!
//! - `run_core`: what every run state holds, how it is made, runs its phases and ends.
//! - `steps`: what several commands do alike over their run state: the first-server and
//!   every-host selections, the lock taken on its own, the node-list read, the wait for a node
//!   Ready at a version.
//! - `host_status`: how a host ended (`HostEnd`) and the columns every report row shares
//!   (`HostLine`); `outcome`: `up`'s report.
//! - `decide`: the per-host action (the idempotency rule).
//! - `airgap`: the release fetched once on the workstation, and what each host lacks uploaded
//!   and verified on the host.
//! - `gitlab`: the GitLab phase (register, write the HelmChart manifests, wait for them; what
//!   it keeps on the first server is `crate::host::gitlab_state`).
//! - `up`: `up` / `plan` / `status`.
//! - `reset`: `edgeops reset` (uninstall, agents first), its report and its dry run.
//! - `backup`, `restore`: etcd snapshots copied to the workstation, and a cluster brought back
//!   from one (`k3s::snapshot` holds their scripts and the workstation side).
//! - `upgrade`: the rolling `edgeops upgrade` (its phases listed in `upgrade/mod.rs`).
//! - `drain`: cordon and drain one node through the first server (reset, upgrade).
//! - `replace`: a dead board's node deleted before `up --limit` brings the new one in.
//! - `tests` (tests only): the scripted hosts and script markers the run tests of
//!   reset, restore, backup and replace share.
//!
//! The scripts the phases send are not here: k3s's (install, restart, API read, uninstall, etcd
//! snapshots and the restore from one) are `crate::k3s::remote`, `crate::k3s::uninstall` and
//! `crate::k3s::snapshot` (an install's bounds and its watch `crate::k3s::join_watch`), the
//! lock's `crate::host::lock`, and their folding into fewer round trips on the first server
//! `crate::host::fold`.

pub mod airgap;
pub mod backup;
pub mod decide;
pub mod drain;
pub mod gitlab;
pub mod host_status;
pub mod outcome;
pub mod replace;
pub mod reset;
pub mod restore;
pub mod run_core;
pub mod steps;
#[cfg(test)]
mod tests;
mod up;
pub mod upgrade;

pub use outcome::{HostReport, NodeRow, RunReport, Status};
pub use up::{KubeconfigTarget, Mode, Reboot, UpOptions, fetch_kubeconfig, run, status};

pub use crate::engine::observer::{Observer, Progress, Quiet};
