//! The GitLab agent for Kubernetes: find or register an agent in a project, and create, list and
//! revoke its tokens.
//!
//! Fields follow GitLab's Agents API, <https://docs.gitlab.com/ee/api/cluster_agents.html>:
//! list/register `GET|POST /projects/:id/cluster_agents` (`id`, `name`, `config_project`), tokens
//! `GET|POST /projects/:id/cluster_agents/:agent_id/tokens` (`name`, `description` → `id`,
//! `token`, `status`), revoke `DELETE .../tokens/:token_id`, delete the agent
//! `DELETE /projects/:id/cluster_agents/:agent_id` (204; 404 once gone). An agent holds at most two active
//! tokens at a time.

use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::client::{Call, GitLabClient, ProjectRef};
use super::error::{ErrorContext, GitLabError};

/// Active tokens GitLab lets one agent hold ("Each agent supports a maximum of two active
/// tokens at a time", <https://docs.gitlab.com/cli/cluster/agent/token/>).
pub const MAX_ACTIVE_AGENT_TOKENS: usize = 2;

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Agent {
    pub id: u64,
    pub name: String,
}

/// A token of an agent as GitLab lists it (the secret itself is shown only once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AgentTokenInfo {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `active` or `revoked`.
    #[serde(default)]
    pub status: Option<String>,
}

impl AgentTokenInfo {
    /// Whether the token still works (GitLab's list may include revoked ones on some versions).
    pub fn is_active(&self) -> bool {
        self.status
            .as_deref()
            .is_none_or(|status| status == "active")
    }
}

/// A freshly created agent token: the only moment GitLab shows its secret.
#[derive(Debug, Clone)]
pub struct NewAgentToken {
    pub id: u64,
    pub name: String,
    /// `glagent-...`; `SecretString`'s Debug prints a placeholder.
    pub token: SecretString,
}

/// Whether an object was there already or made by this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Found,
    Created,
}

#[derive(Deserialize)]
struct CreatedTokenBody {
    id: u64,
    name: String,
    token: String,
}

fn agents_path(project: &ProjectRef) -> String {
    format!("/projects/{}/cluster_agents", project.url_segment())
}

fn tokens_path(project: &ProjectRef, agent_id: u64) -> String {
    format!("{}/{agent_id}/tokens", agents_path(project))
}

fn project_context(project: &ProjectRef, action: &str, role: &str) -> ErrorContext {
    ErrorContext {
        subject: format!("project {project}"),
        needs: format!(
            "{action} needs a token with scope `api` whose user has at least the {role} role on \
             project {project}"
        ),
    }
}

impl GitLabClient {
    /// Every agent registered in `project`, all pages.
    pub async fn list_agents(&self, project: &ProjectRef) -> Result<Vec<Agent>, GitLabError> {
        let context = project_context(project, "listing agents", "Developer");
        self.get_all(Call::new(Method::GET, agents_path(project), context))
            .await
    }

    /// The agent called `name` in `project`, if registered.
    pub async fn find_agent(
        &self,
        project: &ProjectRef,
        name: &str,
    ) -> Result<Option<Agent>, GitLabError> {
        let agents = self.list_agents(project).await?;
        Ok(agents.into_iter().find(|agent| agent.name == name))
    }

    /// Register a new agent called `name` in `project`.
    pub async fn create_agent(
        &self,
        project: &ProjectRef,
        name: &str,
    ) -> Result<Agent, GitLabError> {
        let context = project_context(project, "registering an agent", "Maintainer");
        let call =
            Call::new(Method::POST, agents_path(project), context).body(json!({ "name": name }));
        self.send_json(call).await
    }

    /// The agent called `name`, registered now if it was not. A name taken between the lookup and
    /// the registration (another run racing) is resolved by looking again, not by failing.
    pub async fn find_or_create_agent(
        &self,
        project: &ProjectRef,
        name: &str,
    ) -> Result<(Agent, Outcome), GitLabError> {
        if let Some(agent) = self.find_agent(project, name).await? {
            return Ok((agent, Outcome::Found));
        }
        match self.create_agent(project, name).await {
            Ok(agent) => Ok((agent, Outcome::Created)),
            Err(error @ GitLabError::Rejected { .. }) => {
                match self.find_agent(project, name).await? {
                    Some(agent) => Ok((agent, Outcome::Found)),
                    None => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// The tokens of agent `agent_id`, all pages.
    pub async fn list_agent_tokens(
        &self,
        project: &ProjectRef,
        agent_id: u64,
    ) -> Result<Vec<AgentTokenInfo>, GitLabError> {
        let context = ErrorContext {
            subject: format!("agent {agent_id} of project {project}"),
            ..project_context(project, "listing agent tokens", "Maintainer")
        };
        self.get_all(Call::new(
            Method::GET,
            tokens_path(project, agent_id),
            context,
        ))
        .await
    }

    /// Create a token for agent `agent_id`; its secret is in the answer and nowhere else, ever.
    pub async fn create_agent_token(
        &self,
        project: &ProjectRef,
        agent_id: u64,
        name: &str,
        description: &str,
    ) -> Result<NewAgentToken, GitLabError> {
        let context = ErrorContext {
            subject: format!("agent {agent_id} of project {project}"),
            ..project_context(project, "creating an agent token", "Maintainer")
        };
        let call = Call::new(Method::POST, tokens_path(project, agent_id), context)
            .body(json!({ "name": name, "description": description }));
        let created: CreatedTokenBody = self.send_json(call).await?;
        Ok(NewAgentToken {
            id: created.id,
            name: created.name,
            token: SecretString::from(created.token),
        })
    }

    /// Revoke token `token_id` of agent `agent_id`.
    pub async fn revoke_agent_token(
        &self,
        project: &ProjectRef,
        agent_id: u64,
        token_id: u64,
    ) -> Result<(), GitLabError> {
        let context = ErrorContext {
            subject: format!("token {token_id} of agent {agent_id} in project {project}"),
            ..project_context(project, "revoking an agent token", "Maintainer")
        };
        let path = format!("{}/{token_id}", tokens_path(project, agent_id));
        self.send(&Call::new(Method::DELETE, path, context)).await?;
        Ok(())
    }

    /// Delete agent `agent_id` from `project` (GitLab drops its tokens with it).
    pub async fn delete_agent(
        &self,
        project: &ProjectRef,
        agent_id: u64,
    ) -> Result<(), GitLabError> {
        let context = ErrorContext {
            subject: format!("agent {agent_id} of project {project}"),
            ..project_context(project, "deleting an agent", "Maintainer")
        };
        let path = format!("{}/{agent_id}", agents_path(project));
        self.send(&Call::new(Method::DELETE, path, context)).await?;
        Ok(())
    }
}
