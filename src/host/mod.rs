//! What edgeops knows about a host, without orchestrating anything: its facts (one read-only
//! round trip, parsed), the distribution prerequisites judged from them, the preflight refusals
//! and warnings, and the Raspberry Pi memory-controller check. The phases decide and act on these.
//!
//! - `facts`: the facts script, its parser and the one read through the engine.
//! - `preflight`: refusals and warnings from facts; `distro`: the distribution prerequisites.
//! - `pi_memory`: whether the memory controller is on after the cgroup flags and the reboot.

pub mod distro;
pub mod facts;
pub mod pi_memory;
pub mod preflight;
