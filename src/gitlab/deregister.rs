//! The undoing of [`register`](super::register) that `reset --gitlab` runs: delete the runner(s)
//! edgeops created (found by description, as `up` finds them), revoke the agent's tokens, delete
//! the agent, and delete its config file with a commit. Every item is tried even when an earlier
//! one failed, and each says what became of it; a 404 (or an absent file) is "already gone", so a
//! second run is a no-op that says so.

use super::agents::Agent;
use super::client::{GitLabClient, ProjectRef};
use super::error::GitLabError;
use super::register::agent_config_path;
use super::runners::RunnerScope;

/// What to remove.
#[derive(Debug, Clone)]
pub struct DeregisterRequest {
    pub project: ProjectRef,
    pub agent_name: String,
    /// The runner's scope and description (`edgeops:<cluster>`), if the inventory has one.
    pub runner: Option<(RunnerScope, String)>,
}

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Deleted,
    AlreadyGone,
}

/// One thing in GitLab and what removing it did.
#[derive(Debug)]
pub struct Removed {
    /// `runner`, `agent token`, `agent`, `agent config`.
    pub item: &'static str,
    /// Which one: the runner's description, the agent's name, the file path.
    pub name: String,
    /// Ids and the like; never a secret.
    pub detail: String,
    pub outcome: Result<Removal, GitLabError>,
}

impl Removed {
    fn new(item: &'static str, name: impl Into<String>) -> Removed {
        Removed {
            item,
            name: name.into(),
            detail: String::new(),
            outcome: Ok(Removal::AlreadyGone),
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Removed {
        self.detail = detail.into();
        self
    }

    fn outcome(mut self, outcome: Result<Removal, GitLabError>) -> Removed {
        self.outcome = outcome;
        self
    }
}

/// A 404 on a delete: someone (or an earlier run) removed it first.
fn gone(result: Result<(), GitLabError>) -> Result<Removal, GitLabError> {
    match result {
        Ok(()) => Ok(Removal::Deleted),
        Err(GitLabError::NotFound { .. }) => Ok(Removal::AlreadyGone),
        Err(error) => Err(error),
    }
}

impl GitLabClient {
    /// Remove everything `register` made for `request`; one [`Removed`] per item, in order:
    /// runner(s), agent tokens, agent, agent config.
    pub async fn deregister(&self, request: &DeregisterRequest) -> Vec<Removed> {
        let mut items = Vec::new();
        let project = &request.project;

        if let Some((scope, description)) = &request.runner {
            match self.find_runners(scope, description).await {
                Ok(runners) if runners.is_empty() => {
                    items.push(Removed::new("runner", description.clone()));
                }
                Ok(runners) => {
                    for runner in runners {
                        let outcome = gone(self.delete_runner(runner.id).await);
                        items.push(
                            Removed::new("runner", description.clone())
                                .detail(format!("id {}", runner.id))
                                .outcome(outcome),
                        );
                    }
                }
                Err(error) => {
                    items.push(Removed::new("runner", description.clone()).outcome(Err(error)))
                }
            }
        }

        let agent_name = &request.agent_name;
        match self.find_agent(project, agent_name).await {
            Ok(Some(agent)) => {
                items.extend(self.revoke_all_tokens(project, &agent).await);
                let outcome = gone(self.delete_agent(project, agent.id).await);
                items.push(
                    Removed::new("agent", agent_name.clone())
                        .detail(format!("id {}", agent.id))
                        .outcome(outcome),
                );
            }
            Ok(None) => {
                items.push(Removed::new("agent token", super::AGENT_TOKEN_NAME));
                items.push(Removed::new("agent", agent_name.clone()));
            }
            // Its tokens cannot be told apart without it: one failed row covers both.
            Err(error) => {
                items.push(Removed::new("agent", agent_name.clone()).outcome(Err(error)));
            }
        }

        let path = agent_config_path(agent_name);
        let outcome = match self.default_branch(project).await {
            // An empty repository holds no file.
            Ok(None) => Ok(Removal::AlreadyGone),
            Ok(Some(branch)) => {
                let message = format!("edgeops: remove agent config for {agent_name} (reset)");
                self.delete_file(project, &path, &branch, &message)
                    .await
                    .map(|deleted| {
                        if deleted {
                            Removal::Deleted
                        } else {
                            Removal::AlreadyGone
                        }
                    })
            }
            Err(error) => Err(error),
        };
        items.push(
            Removed::new("agent config", path)
                .detail(format!("project {project}"))
                .outcome(outcome),
        );
        items
    }

    /// Revoke every active token of `agent` (all of them: the agent itself goes next).
    async fn revoke_all_tokens(&self, project: &ProjectRef, agent: &Agent) -> Vec<Removed> {
        let tokens = match self.list_agent_tokens(project, agent.id).await {
            Ok(tokens) => tokens,
            Err(error) => {
                return vec![
                    Removed::new("agent token", super::AGENT_TOKEN_NAME).outcome(Err(error)),
                ];
            }
        };
        let active: Vec<_> = tokens.into_iter().filter(|t| t.is_active()).collect();
        if active.is_empty() {
            return vec![
                Removed::new("agent token", super::AGENT_TOKEN_NAME).detail("none active"),
            ];
        }
        let mut items = Vec::new();
        for token in active {
            let outcome = gone(self.revoke_agent_token(project, agent.id, token.id).await);
            items.push(
                Removed::new("agent token", token.name.clone())
                    .detail(format!("id {}", token.id))
                    .outcome(outcome),
            );
        }
        items
    }
}
