//! edgeops: from a rack of bare boards to a ready k3s cluster wired into GitLab, from one TOML inventory.
//!
//! Layout (data flows one way, top to bottom):
//! - `inventory`: the TOML schema, validation with line:column errors, hostlist ranges, `--limit`.
//! - `ssh`: one host's session (russh): host keys, auth, exec, sudo, upload, reconnect, jump host.
//! - `fleet`: one async step over many hosts with bounded concurrency, timeouts, retries, progress.
//! - `gitlab`: the GitLab REST client (agents, agent tokens, runners, repository files).
//! - `report`: fan-out results for people and scripts: prefixed lines, folded groups, summary, JSON.
//! - `k3s`: k3s knowledge without SSH: versions, channels, install env and config, tokens,
//!   node readiness, kubeconfig.
//! - `host`: what edgeops knows of a host: its facts (one round trip), distribution
//!   prerequisites, preflight refusals and warnings, the Raspberry Pi memory check.
//! - `phases`: every command as ordered steps on the engine, each deciding per host from live facts.
//! - `render`: minijinja templates (built-in, overridable) and the GitLab files rendered from them.
//! - `sites`: a set of site inventories from the command line; `ci`: their GitLab pipeline.
//! - `engine`: the one run core (host ids, typed failures, one exec, fan-out, phase manager).
//! - `cli` / `commands`: clap surface and the wiring of each command (`commands::fleet`: several
//!   inventories at once); `exit`: exit codes.

pub mod ci;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod exit;
pub mod fleet;
pub mod gitlab;
pub mod host;
pub mod inventory;
pub mod k3s;
pub mod logging;
pub mod phases;
pub mod render;
pub mod report;
pub mod sanitize;
pub mod shell;
pub mod sites;
pub mod ssh;
