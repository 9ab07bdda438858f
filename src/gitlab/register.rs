//! The registration flow `up` runs: commit the agent config, find or register the agent, get it a
//! token, find or create the runner and get its token. Idempotent: a re-run with the tokens the
//! caller stored finds everything and creates nothing; tokens are issued only when the caller has
//! none or asks to rotate.

use secrecy::SecretString;

use super::agents::{Agent, MAX_ACTIVE_AGENT_TOKENS, Outcome};
use super::client::{GitLabClient, ProjectRef};
use super::error::GitLabError;
use super::files::{FileChange, FileCommit};
use super::runners::RunnerSpec;

/// Name given to every agent token edgeops creates; how rotation tells ours from others.
pub const AGENT_TOKEN_NAME: &str = "edgeops";

/// Branch used when the project's repository is still empty (GitLab creates it on first commit).
const FALLBACK_BRANCH: &str = "main";

/// What to register.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    /// The project holding the agent configuration (`.gitlab/agents/<name>/config.yaml`).
    pub project: ProjectRef,
    pub agent_name: String,
    /// The rendered agent config; `None` leaves the repository alone.
    pub agent_config: Option<String>,
    /// The runner to have, if any.
    pub runner: Option<RunnerSpec>,
    /// Tokens the caller kept from an earlier run.
    pub existing: ExistingTokens,
    /// Issue new tokens even when the caller has working ones (and revoke edgeops' old ones).
    pub rotate_tokens: bool,
}

/// Tokens the caller already holds (stored on the server by an earlier run).
#[derive(Debug, Clone, Default)]
pub struct ExistingTokens {
    pub agent: Option<SecretString>,
    pub runner: Option<SecretString>,
}

/// Where a token in the result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The caller's stored token, still valid as far as GitLab's objects show.
    Reused,
    /// Issued now because the caller had none, its object was new, or (agent) no token of
    /// edgeops' was active any more.
    Created,
    /// Issued now because rotation was asked for; the previous one is revoked.
    Rotated,
}

/// A token and where it came from; Debug shows no secret.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: SecretString,
    pub source: TokenSource,
}

impl IssuedToken {
    /// Whether the caller must store (and deploy) a new token.
    pub fn is_new(&self) -> bool {
        self.source != TokenSource::Reused
    }
}

/// The runner part of a registration.
#[derive(Debug, Clone)]
pub struct RunnerRegistration {
    pub runner_id: u64,
    pub outcome: Outcome,
    pub token: IssuedToken,
    /// Whether the found runner's tags or flags differed from the spec and were updated.
    pub settings_updated: bool,
    /// Other runners with the same description (left by hand or an older tool): not touched,
    /// reported so the user can delete them.
    pub duplicates: Vec<u64>,
}

/// What `register` found and what it created.
#[derive(Debug, Clone)]
pub struct Registration {
    pub project_id: u64,
    pub branch: String,
    /// What happened to the agent config file, if one was given.
    pub agent_config: Option<FileChange>,
    pub agent: Agent,
    pub agent_outcome: Outcome,
    pub agent_token: IssuedToken,
    /// Ids of edgeops' old agent tokens revoked by this run.
    pub revoked_agent_tokens: Vec<u64>,
    pub runner: Option<RunnerRegistration>,
}

/// Where an agent's configuration lives in its project.
pub fn agent_config_path(agent_name: &str) -> String {
    format!(".gitlab/agents/{agent_name}/config.yaml")
}

impl GitLabClient {
    /// Run the whole registration; see the module docs.
    pub async fn register(&self, request: &RegisterRequest) -> Result<Registration, GitLabError> {
        let project = self.get_project(&request.project).await?;
        let branch = project
            .default_branch
            .clone()
            .unwrap_or_else(|| FALLBACK_BRANCH.to_owned());
        // As the user named it, so every error message names the project the way they know it.
        let project_ref = &request.project;

        // The config goes in first: GitLab reads it when the agent connects.
        let agent_config = match &request.agent_config {
            Some(content) => {
                let path = agent_config_path(&request.agent_name);
                let message = format!("edgeops: agent config for {}", request.agent_name);
                let file = FileCommit {
                    project: project_ref,
                    path: &path,
                    branch: &branch,
                    content,
                    message: &message,
                };
                Some(if project.default_branch.is_some() {
                    self.put_file_if_changed(&file).await?
                } else {
                    // An empty repository has no branch to read from; the first commit makes it.
                    self.create_file(&file).await?;
                    FileChange::Created
                })
            }
            None => None,
        };

        let (agent, agent_outcome) = self
            .find_or_create_agent(project_ref, &request.agent_name)
            .await?;
        let (agent_token, revoked_agent_tokens) = self
            .agent_token_for(project_ref, &agent, agent_outcome, request)
            .await?;

        let runner = match &request.runner {
            Some(spec) => Some(self.runner_for(spec, request).await?),
            None => None,
        };

        Ok(Registration {
            project_id: project.id,
            branch,
            agent_config,
            agent,
            agent_outcome,
            agent_token,
            revoked_agent_tokens,
            runner,
        })
    }

    /// Reuse the caller's agent token, or issue one, revoking edgeops' older tokens: the caller
    /// holds only the newest, and GitLab allows an agent just two active tokens.
    async fn agent_token_for(
        &self,
        project: &ProjectRef,
        agent: &Agent,
        outcome: Outcome,
        request: &RegisterRequest,
    ) -> Result<(IssuedToken, Vec<u64>), GitLabError> {
        let description = format!("managed by edgeops for agent {}", agent.name);
        if outcome == Outcome::Created {
            let token = self
                .create_agent_token(project, agent.id, AGENT_TOKEN_NAME, &description)
                .await?;
            let issued = IssuedToken {
                token: token.token,
                source: TokenSource::Created,
            };
            return Ok((issued, Vec::new()));
        }

        let active: Vec<_> = self
            .list_agent_tokens(project, agent.id)
            .await?
            .into_iter()
            .filter(|token| token.is_active())
            .collect();
        let mut ours: Vec<u64> = active
            .iter()
            .filter(|token| token.name == AGENT_TOKEN_NAME)
            .map(|token| token.id)
            .collect();
        ours.sort_unstable();
        // A stored token is only worth reusing while one of ours is still active: revoked in the
        // UI, it would leave the agent unable to connect.
        if let (Some(existing), false, false) = (
            &request.existing.agent,
            request.rotate_tokens,
            ours.is_empty(),
        ) {
            let issued = IssuedToken {
                token: existing.clone(),
                source: TokenSource::Reused,
            };
            return Ok((issued, Vec::new()));
        }
        let mut revoked = Vec::new();
        // Make room for one more: revoke ours, oldest first, until below the limit.
        let mut active_count = active.len();
        while active_count >= MAX_ACTIVE_AGENT_TOKENS && !ours.is_empty() {
            let oldest = ours.remove(0);
            self.revoke_agent_token(project, agent.id, oldest).await?;
            revoked.push(oldest);
            active_count -= 1;
        }
        let token = self
            .create_agent_token(project, agent.id, AGENT_TOKEN_NAME, &description)
            .await?;
        // The new token works; the rest of ours are no longer held by anyone.
        for old in ours {
            self.revoke_agent_token(project, agent.id, old).await?;
            revoked.push(old);
        }
        let source = if request.existing.agent.is_some() && request.rotate_tokens {
            TokenSource::Rotated
        } else {
            TokenSource::Created
        };
        Ok((
            IssuedToken {
                token: token.token,
                source,
            },
            revoked,
        ))
    }

    /// Find our runner by description or create it; reuse, reset or take its token.
    async fn runner_for(
        &self,
        spec: &RunnerSpec,
        request: &RegisterRequest,
    ) -> Result<RunnerRegistration, GitLabError> {
        let mut found = self.find_runners(&spec.scope, &spec.description).await?;
        if found.is_empty() {
            let created = self.create_runner(spec).await?;
            return Ok(RunnerRegistration {
                runner_id: created.runner_id,
                outcome: Outcome::Created,
                token: IssuedToken {
                    token: created.token,
                    source: TokenSource::Created,
                },
                settings_updated: false,
                duplicates: Vec::new(),
            });
        }
        let runner = found.remove(0);
        let duplicates = found.into_iter().map(|runner| runner.id).collect();
        // Tags or flags changed in the inventory since the runner was made: apply them, but
        // only when they differ, so a re-run stays free of writes.
        let details = self.get_runner(runner.id).await?;
        let settings_updated = !spec.is_applied(&details);
        if settings_updated {
            self.update_runner(runner.id, spec).await?;
        }
        let token = match (&request.existing.runner, request.rotate_tokens) {
            (Some(existing), false) => IssuedToken {
                token: existing.clone(),
                source: TokenSource::Reused,
            },
            // The runner exists but its token is lost (or due for rotation): resetting keeps the
            // runner, its id and its settings, instead of creating a second one.
            (existing, _) => IssuedToken {
                token: self.reset_runner_token(runner.id).await?.token,
                source: if existing.is_some() {
                    TokenSource::Rotated
                } else {
                    TokenSource::Created
                },
            },
        };
        Ok(RunnerRegistration {
            runner_id: runner.id,
            outcome: Outcome::Found,
            token,
            settings_updated,
            duplicates,
        })
    }
}
