//! The GitLab REST client: agents for Kubernetes and their tokens, runners and their `glrt-`
//! tokens, repository files, and the idempotent `register` flow `up` runs. It knows GitLab's API
//! and nothing of k3s or SSH; errors say what GitLab answered and what to do.
//!
//! - `client`: auth, timeouts, retries (429/5xx, `Retry-After`), pagination, error mapping.
//! - `error`: [`GitLabError`], one variant per kind of answer callers branch on.
//! - `agents`, `runners`, `files`: one module per API area.
//! - `register`: find-or-create everything, reusing or rotating tokens.
//! - `deregister`: remove all of it again (`reset --gitlab`), each item deleted or already gone.
//! - `kas`: the agent server address for the gitlab-agent chart, from the instance URL.

mod agents;
mod client;
mod deregister;
mod error;
mod files;
mod kas;
mod register;
mod runners;

pub use agents::{Agent, AgentTokenInfo, MAX_ACTIVE_AGENT_TOKENS, NewAgentToken, Outcome};
pub use client::{
    ClientOptions, GitLabClient, GroupRef, PathOrId, ProjectRef, encode_component, retry_delay,
};
pub use deregister::{DeregisterRequest, Removal, Removed};
pub use error::{GitLabError, RequestLabel};
pub use files::{FileChange, FileCommit, Project, RepoFile, sha256_hex};
pub use kas::kas_address;
pub use register::{
    AGENT_TOKEN_NAME, ExistingTokens, IssuedToken, RegisterRequest, Registration,
    RunnerRegistration, TokenSource, agent_config_path,
};
pub use runners::{Runner, RunnerDetails, RunnerScope, RunnerSpec, RunnerToken};
