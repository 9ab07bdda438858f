//! What a run of `up`, `plan` or `status` is asked to do (mode, limits, secrets, flags), and the
//! named limits of its remote steps (docs/UP.md, "Limits").

use std::path::PathBuf;
use std::time::Duration;

use crate::k3s::JoinToken;
use crate::phases::gitlab::GitLabSetup;

/// `up` changes hosts; `plan` only decides; `status` only reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    Plan,
}

/// Where `up` merges the cluster's kubeconfig.
#[derive(Debug, Clone)]
pub struct KubeconfigTarget {
    pub path: PathBuf,
    pub context: String,
}

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub mode: Mode,
    /// How long verify waits for every node to be Ready.
    pub ready_timeout: Duration,
    /// `None`: leave the user's kubeconfig alone.
    pub kubeconfig: Option<KubeconfigTarget>,
    /// Join token from the inventory (already read and validated), if it names one.
    pub token: Option<JoinToken>,
    /// What to do with Raspberry Pis that need the memory cgroup enabled.
    pub reboot: Reboot,
    /// The GitLab phase's token and flags; `None` when the inventory has no `[gitlab]`.
    pub gitlab: Option<GitLabSetup>,
    /// A token that differs from the running cluster's is rotated to (`--rotate-join-token`)
    /// instead of stopping the run.
    pub rotate_join_token: bool,
}

/// Rebooting Raspberry Pis whose cmdline.txt needed the memory cgroup flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reboot {
    /// Edit and reboot them all at once (the default).
    AllAtOnce,
    /// One at a time (`--serial`).
    Serial,
    /// Never (`--no-reboot`): such hosts fail with the reason.
    Never,
}

impl UpOptions {
    /// What `status` runs with: nothing is changed, so no lock, token, kubeconfig or reboot.
    pub fn read_only() -> UpOptions {
        UpOptions {
            mode: Mode::Plan,
            ready_timeout: Duration::ZERO,
            kubeconfig: None,
            token: None,
            reboot: Reboot::Never,
            gitlab: None,
            rotate_join_token: false,
        }
    }
}

/// How long a rebooting Pi may take to answer SSH again with a new boot id.
pub(crate) const REBOOT_WAIT: Duration = Duration::from_secs(300);
/// One boot-id check after a Pi reboot.
pub(crate) const BOOT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// The first server needs this long at most to bring its API up after an install.
pub(crate) const API_WAIT: Duration = Duration::from_secs(180);
pub(crate) use crate::k3s::channel::CHANNEL_TIMEOUT;
/// Air-gap uploads in flight at once, fleet-wide (each holds its file in memory).
pub(crate) const AIRGAP_UPLOADS: usize = 4;
/// Pause between node polls during verify.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(2);
