//! What edgeops knows about a host, and keeps on it, without orchestrating anything: its facts
//! (one read-only round trip, parsed), the distribution prerequisites judged from them, the
//! preflight refusals and warnings, the Raspberry Pi memory-controller check, and the cluster
//! lock file. The phases decide and act on these.
//!
//! - `facts`: the facts script, its parser and the one read through the engine.
//! - `preflight`: refusals and warnings from facts; `distro`: the distribution prerequisites.
//! - `fold`: several of the first server's scripts folded into one round trip (the lock with the
//!   facts, the release with the last command, the node list with the API read).
//! - `gitlab_state`: the GitLab tokens kept on the first server, and the look at them and at
//!   the HelmChart manifests.
//! - `lock`: the cluster lock file edgeops keeps on the first server while a run changes the
//!   cluster (taken, taken over, held by whom, released also after Ctrl-C).
//! - `pi_memory`: whether the memory controller is on after the cgroup flags and the reboot.

pub mod distro;
pub mod facts;
pub mod fold;
pub mod gitlab_state;
pub mod lock;
pub mod pi_memory;
pub mod preflight;
