//! GitLab runners in the current token flow: create a runner through the API and receive its
//! `glrt-` authentication token, find ours again by description, reset its token, delete it.
//!
//! Fields follow GitLab's docs: create `POST /user/runners`
//! (<https://docs.gitlab.com/api/users/#create-a-runner-linked-to-a-user>: `runner_type`,
//! `group_id`/`project_id`, `description`, `tag_list`, `run_untagged`, `locked`, `paused` → `id`,
//! `token`, `token_expires_at`); list `GET /projects/:id/runners`, `GET /groups/:id/runners`,
//! `GET /runners/all` with `type`, `GET|PUT /runners/:id` (`tag_list`, `run_untagged`, `locked`,
//! `paused`), delete `DELETE /runners/:id`, and
//! `POST /runners/:id/reset_authentication_token` (<https://docs.gitlab.com/ee/api/runners.html>).
//! The deprecated registration-token flow is not used.

use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::client::{Call, GitLabClient, GroupRef, ProjectRef};
use super::error::{ErrorContext, GitLabError};

/// Where a runner belongs: GitLab's `runner_type` and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerScope {
    /// `instance_type`: every project may use it; only an administrator may create one.
    Instance,
    /// `group_type`: the group's projects; needs the Owner role on the group.
    Group(GroupRef),
    /// `project_type`: one project; needs the Maintainer role on it.
    Project(ProjectRef),
}

impl RunnerScope {
    /// GitLab's `runner_type` value.
    pub fn runner_type(&self) -> &'static str {
        match self {
            Self::Instance => "instance_type",
            Self::Group(_) => "group_type",
            Self::Project(_) => "project_type",
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Instance => "the instance".to_owned(),
            Self::Group(group) => format!("group {group}"),
            Self::Project(project) => format!("project {project}"),
        }
    }

    /// What `action` needs; `scopes` names the token scopes that allow it.
    fn needs(&self, action: &str, scopes: &str) -> String {
        let who = match self {
            Self::Instance => "an administrator".to_owned(),
            Self::Group(group) => format!("a user with the Owner role on group {group}"),
            Self::Project(project) => {
                format!("a user with at least the Maintainer role on project {project}")
            }
        };
        format!("{action} needs a token with {scopes} of {who}")
    }
}

/// The runner edgeops wants; `description` is how a re-run finds it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerSpec {
    pub scope: RunnerScope,
    /// `edgeops:<cluster>` by convention: unique per cluster, the key for find-or-create.
    pub description: String,
    pub tags: Vec<String>,
    pub run_untagged: bool,
    pub locked: bool,
}

/// A runner as GitLab lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Runner {
    pub id: u64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub runner_type: Option<String>,
    #[serde(default)]
    pub paused: Option<bool>,
}

/// A runner's settings, as `GET /runners/:id` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunnerDetails {
    pub id: u64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tag_list: Vec<String>,
    #[serde(default)]
    pub run_untagged: Option<bool>,
    #[serde(default)]
    pub locked: Option<bool>,
    #[serde(default)]
    pub paused: Option<bool>,
}

impl RunnerSpec {
    /// Whether `details` already has this spec's settings (tags compared as a set).
    pub fn is_applied(&self, details: &RunnerDetails) -> bool {
        let mut wanted = self.tags.clone();
        wanted.sort();
        wanted.dedup();
        let mut actual = details.tag_list.clone();
        actual.sort();
        actual.dedup();
        wanted == actual
            && details.run_untagged == Some(self.run_untagged)
            && details.locked == Some(self.locked)
            && details.paused != Some(true)
    }
}

/// A runner authentication token as GitLab hands it out, once.
#[derive(Debug, Clone)]
pub struct RunnerToken {
    pub runner_id: u64,
    /// `glrt-...`; `SecretString`'s Debug prints a placeholder.
    pub token: SecretString,
    /// When GitLab will stop accepting it, if the instance expires runner tokens.
    pub expires_at: Option<String>,
}

/// `POST /user/runners` answer.
#[derive(Deserialize)]
struct CreatedRunnerBody {
    id: u64,
    token: String,
    #[serde(default)]
    token_expires_at: Option<String>,
}

/// `POST /runners/:id/reset_authentication_token` answer.
#[derive(Deserialize)]
struct ResetTokenBody {
    token: String,
    #[serde(default)]
    token_expires_at: Option<String>,
}

#[derive(Deserialize)]
struct IdBody {
    id: u64,
}

impl GitLabClient {
    /// Create a runner per `spec` (`paused` false) and return its authentication token.
    pub async fn create_runner(&self, spec: &RunnerSpec) -> Result<RunnerToken, GitLabError> {
        let mut body = json!({
            "runner_type": spec.scope.runner_type(),
            "description": spec.description,
            "tag_list": spec.tags.join(","),
            "run_untagged": spec.run_untagged,
            "locked": spec.locked,
            "paused": false,
        });
        // `POST /user/runners` takes numeric ids only, so paths are resolved first.
        match &spec.scope {
            RunnerScope::Instance => {}
            RunnerScope::Group(group) => body["group_id"] = json!(self.group_id(group).await?),
            RunnerScope::Project(project) => {
                body["project_id"] = json!(self.project_id(project).await?)
            }
        }
        let context = ErrorContext {
            subject: spec.scope.describe(),
            needs: spec
                .scope
                .needs("creating a runner", "scope `create_runner` or `api`"),
        };
        let call = Call::new(Method::POST, "/user/runners".to_owned(), context).body(body);
        let created: CreatedRunnerBody = self.send_json(call).await?;
        Ok(RunnerToken {
            runner_id: created.id,
            token: SecretString::from(created.token),
            expires_at: created.token_expires_at,
        })
    }

    /// The runners of `scope`'s own type (a project's list also shows instance and group
    /// runners it may use; those are not ours to find).
    pub async fn list_runners(&self, scope: &RunnerScope) -> Result<Vec<Runner>, GitLabError> {
        let path = match scope {
            RunnerScope::Instance => "/runners/all".to_owned(),
            RunnerScope::Group(group) => format!("/groups/{}/runners", group.url_segment()),
            RunnerScope::Project(project) => {
                format!("/projects/{}/runners", project.url_segment())
            }
        };
        let context = ErrorContext {
            subject: scope.describe(),
            // `create_runner` alone cannot list, and listing is what keeps re-runs from
            // creating a second runner.
            needs: scope.needs("listing runners", "scope `api` (or `read_api`)"),
        };
        let call = Call::new(Method::GET, path, context).query("type", scope.runner_type());
        self.get_all(call).await
    }

    /// Runners of `scope` whose description is exactly `description`, lowest id first.
    pub async fn find_runners(
        &self,
        scope: &RunnerScope,
        description: &str,
    ) -> Result<Vec<Runner>, GitLabError> {
        let mut found: Vec<Runner> = self
            .list_runners(scope)
            .await?
            .into_iter()
            .filter(|runner| runner.description.as_deref() == Some(description))
            .collect();
        found.sort_by_key(|runner| runner.id);
        Ok(found)
    }

    /// Issue a new authentication token for runner `runner_id`; the old one stops working.
    pub async fn reset_runner_token(&self, runner_id: u64) -> Result<RunnerToken, GitLabError> {
        let context = manage_context(runner_id, "resetting a runner's token");
        let path = format!("/runners/{runner_id}/reset_authentication_token");
        let answer: ResetTokenBody = self
            .send_json(Call::new(Method::POST, path, context))
            .await?;
        Ok(RunnerToken {
            runner_id,
            token: SecretString::from(answer.token),
            expires_at: answer.token_expires_at,
        })
    }

    /// Runner `runner_id`'s settings.
    pub async fn get_runner(&self, runner_id: u64) -> Result<RunnerDetails, GitLabError> {
        let context = manage_context(runner_id, "reading a runner's settings");
        let path = format!("/runners/{runner_id}");
        self.send_json(Call::new(Method::GET, path, context)).await
    }

    /// Bring runner `runner_id`'s tags, `run_untagged`, `locked` and `paused` (false) to `spec`.
    pub async fn update_runner(
        &self,
        runner_id: u64,
        spec: &RunnerSpec,
    ) -> Result<(), GitLabError> {
        let context = manage_context(runner_id, "updating a runner");
        let path = format!("/runners/{runner_id}");
        let call = Call::new(Method::PUT, path, context).body(json!({
            "description": spec.description,
            "tag_list": spec.tags.join(","),
            "run_untagged": spec.run_untagged,
            "locked": spec.locked,
            "paused": false,
        }));
        self.send(&call).await?;
        Ok(())
    }

    /// Delete runner `runner_id`.
    pub async fn delete_runner(&self, runner_id: u64) -> Result<(), GitLabError> {
        let context = manage_context(runner_id, "deleting a runner");
        let path = format!("/runners/{runner_id}");
        self.send(&Call::new(Method::DELETE, path, context)).await?;
        Ok(())
    }

    /// The numeric id of `group` (GitLab's `POST /user/runners` accepts no paths).
    pub async fn group_id(&self, group: &GroupRef) -> Result<u64, GitLabError> {
        if let GroupRef::Id(id) = group {
            return Ok(*id);
        }
        let context = ErrorContext {
            subject: format!("group {group}"),
            needs: format!("reading group {group} needs a token with scope `api` or `read_api`"),
        };
        let path = format!("/groups/{}", group.url_segment());
        let body: IdBody = self
            .send_json(Call::new(Method::GET, path, context))
            .await?;
        Ok(body.id)
    }
}

fn manage_context(runner_id: u64, action: &str) -> ErrorContext {
    ErrorContext {
        subject: format!("runner {runner_id}"),
        needs: format!(
            "{action} needs a token with scope `api` (or `manage_runner`) of a user who may \
             manage runner {runner_id} (Maintainer of its project, Owner of its group, or \
             administrator)"
        ),
    }
}
