//! The GitLab files edgeops renders from the inventory's `[gitlab]` section: the agent's
//! `config.yaml`, the gitlab-agent and gitlab-runner chart values, and the k3s HelmChart
//! manifests wrapping them. Typed template contexts live here; talking to GitLab does not.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::inventory::{GitLab, RunnerType};

use super::engine::{
    GITLAB_AGENT_CONFIG, GITLAB_AGENT_VALUES, GITLAB_HELMCHART_AGENT, GITLAB_HELMCHART_RUNNER,
    GITLAB_RUNNER_VALUES, RenderError, Renderer,
};

/// Written where a token belongs when it is not available (no registration yet, or `render`
/// without `--with-secrets`).
pub const AGENT_TOKEN_PLACEHOLDER: &str = "<gitlab-agent-token>";
pub const RUNNER_TOKEN_PLACEHOLDER: &str = "<gitlab-runner-token>";

/// Repository the GitLab charts are published in.
pub const CHARTS_REPO: &str = "https://charts.gitlab.io";
/// Namespace the runner chart and its job pods use.
pub const RUNNER_NAMESPACE: &str = "gitlab-runner";
/// HelmChart (and helm release) name of the runner.
pub const RUNNER_RELEASE: &str = "gitlab-runner";
/// Default image for jobs that name none.
pub const DEFAULT_JOB_IMAGE: &str = "alpine:latest";

/// Where the agent configuration lives in the config project (on the default branch).
pub fn agent_config_repo_path(agent_name: &str) -> String {
    format!(".gitlab/agents/{agent_name}/config.yaml")
}

/// Namespace of the agent, by GitLab's convention `gitlab-agent-<agent-name>`.
pub fn agent_namespace(agent_name: &str) -> String {
    format!("gitlab-agent-{agent_name}")
}

/// HelmChart (and helm release) name of the agent: prefixed so it cannot collide with k3s's own
/// charts in kube-system (traefik, ...).
pub fn agent_release(agent_name: &str) -> String {
    format!("gitlab-agent-{agent_name}")
}

/// The agent server (KAS) address: `[gitlab] kas_address`, else `wss://kas.gitlab.com` for
/// GitLab.com, else `wss://HOST[/PATH]/-/kubernetes-agent/` (`ws://` for an http GitLab), as
/// documented for self-managed instances.
pub fn kas_address(gitlab: &GitLab) -> String {
    if let Some(address) = &gitlab.kas_address {
        return address.clone();
    }
    let url = gitlab.url.trim_end_matches('/');
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => ("ws", rest),
        Some((_, rest)) => ("wss", rest),
        None => ("wss", url),
    };
    if rest == "gitlab.com" {
        return "wss://kas.gitlab.com".to_owned();
    }
    format!("{scheme}://{rest}/-/kubernetes-agent/")
}

/// The tokens that go into chart values, when known.
#[derive(Default)]
pub struct GitLabTokens {
    /// `glagent-...`, from creating an agent token.
    pub agent: Option<SecretString>,
    /// `glrt-...`, from creating the runner.
    pub runner: Option<SecretString>,
}

/// Facts about the cluster the templates need and the inventory does not hold.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    /// `kubernetes.io/arch` of the nodes jobs should run on (all agents' common arch); `None`
    /// leaves the runner's node selector out.
    pub node_arch: Option<String>,
}

/// The rendered GitLab files. Values and manifests may hold tokens: `Debug` hides them.
pub struct GitLabFiles {
    /// Repository path of `agent_config` (`.gitlab/agents/<name>/config.yaml`).
    pub agent_config_path: String,
    pub agent_config: String,
    pub agent_values: String,
    pub agent_helmchart: String,
    /// `None` when `[gitlab.runner] enabled = false`.
    pub runner: Option<RunnerFiles>,
    /// Whether the values hold real tokens (files written 0600) or only placeholders.
    pub holds_secrets: bool,
}

pub struct RunnerFiles {
    pub values: String,
    pub helmchart: String,
}

impl fmt::Debug for GitLabFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitLabFiles")
            .field("agent_config_path", &self.agent_config_path)
            .field("agent_config", &self.agent_config)
            .field("runner", &self.runner.is_some())
            .field("holds_secrets", &self.holds_secrets)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct AgentConfigContext<'a> {
    cluster: &'a str,
    agent_name: &'a str,
    ci_access: Access,
    user_access: Option<UserAccess>,
}

#[derive(Serialize)]
struct Access {
    projects: Vec<String>,
    groups: Vec<String>,
}

/// `user_access` of the agent config: who may use the cluster through the agent.
#[derive(Debug, Clone, Serialize)]
pub struct UserAccess {
    /// `agent` (the agent's service account) or `user` (impersonate the GitLab user).
    pub access_as: String,
    pub projects: Vec<String>,
    pub groups: Vec<String>,
}

#[derive(Serialize)]
struct AgentValuesContext<'a> {
    cluster: &'a str,
    agent_name: &'a str,
    kas_address: String,
    agent_token: &'a str,
}

#[derive(Serialize)]
struct RunnerValuesContext<'a> {
    cluster: &'a str,
    gitlab_url: &'a str,
    runner_token: &'a str,
    runner_type: &'static str,
    tags: &'a [String],
    run_untagged: bool,
    concurrent: u32,
    namespace: &'static str,
    job_image: &'static str,
    privileged: bool,
    node_arch: Option<&'a str>,
}

#[derive(Serialize)]
struct HelmChartContext<'a> {
    cluster: &'a str,
    agent_name: &'a str,
    name: String,
    repo: &'static str,
    chart: &'static str,
    chart_version: Option<&'a str>,
    target_namespace: String,
    values_content: &'a str,
}

fn runner_type_name(runner_type: RunnerType) -> &'static str {
    // The API's `runner_type` values (POST /user/runners).
    match runner_type {
        RunnerType::Instance => "instance_type",
        RunnerType::Group => "group_type",
        RunnerType::Project => "project_type",
    }
}

/// Render every GitLab file for `cluster_name`. `user_access` is optional agent configuration
/// the inventory does not express yet; callers pass `None`.
pub fn render_gitlab(
    renderer: &Renderer,
    cluster_name: &str,
    gitlab: &GitLab,
    tokens: &GitLabTokens,
    facts: &ClusterFacts,
    user_access: Option<UserAccess>,
) -> Result<GitLabFiles, RenderError> {
    let agent_config = renderer.render(
        GITLAB_AGENT_CONFIG,
        &AgentConfigContext {
            cluster: cluster_name,
            agent_name: &gitlab.agent_name,
            ci_access: Access {
                projects: vec![gitlab.project.clone()],
                groups: gitlab.group.iter().cloned().collect(),
            },
            user_access,
        },
    )?;

    // One HelmChart manifest per chart, installed by k3s's helm-controller.
    let helmchart = |template: &str,
                     name: String,
                     chart: &'static str,
                     target_namespace: String,
                     values_content: &str| {
        renderer.render(
            template,
            &HelmChartContext {
                cluster: cluster_name,
                agent_name: &gitlab.agent_name,
                name,
                repo: CHARTS_REPO,
                chart,
                chart_version: None,
                target_namespace,
                values_content,
            },
        )
    };

    let agent_token = exposed_or(&tokens.agent, AGENT_TOKEN_PLACEHOLDER);
    let agent_values = renderer.render(
        GITLAB_AGENT_VALUES,
        &AgentValuesContext {
            cluster: cluster_name,
            agent_name: &gitlab.agent_name,
            kas_address: kas_address(gitlab),
            agent_token,
        },
    )?;
    let agent_helmchart = helmchart(
        GITLAB_HELMCHART_AGENT,
        agent_release(&gitlab.agent_name),
        "gitlab-agent",
        agent_namespace(&gitlab.agent_name),
        &agent_values,
    )?;

    let runner = if gitlab.runner.enabled {
        let settings = &gitlab.runner;
        let runner_token = exposed_or(&tokens.runner, RUNNER_TOKEN_PLACEHOLDER);
        let values = renderer.render(
            GITLAB_RUNNER_VALUES,
            &RunnerValuesContext {
                cluster: cluster_name,
                gitlab_url: &gitlab.url,
                runner_token,
                runner_type: runner_type_name(settings.runner_type),
                tags: &settings.tags,
                run_untagged: settings.run_untagged,
                concurrent: settings.concurrent,
                namespace: RUNNER_NAMESPACE,
                job_image: DEFAULT_JOB_IMAGE,
                privileged: settings.privileged,
                node_arch: facts.node_arch.as_deref(),
            },
        )?;
        let helmchart = helmchart(
            GITLAB_HELMCHART_RUNNER,
            RUNNER_RELEASE.to_owned(),
            "gitlab-runner",
            RUNNER_NAMESPACE.to_owned(),
            &values,
        )?;
        Some(RunnerFiles { values, helmchart })
    } else {
        None
    };

    Ok(GitLabFiles {
        agent_config_path: agent_config_repo_path(&gitlab.agent_name),
        agent_config,
        agent_values,
        agent_helmchart,
        runner,
        holds_secrets: tokens.agent.is_some() || tokens.runner.is_some(),
    })
}

/// The token's text, or the placeholder that stands for it until it is known.
fn exposed_or<'a>(token: &'a Option<SecretString>, placeholder: &'a str) -> &'a str {
    token
        .as_ref()
        .map_or(placeholder, |token| token.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k3s::test_inventory::{ha_inventory, pi_inventory};

    #[test]
    fn kas_address_follows_the_documented_defaults() {
        let mut gitlab = pi_inventory().gitlab.unwrap();
        assert_eq!(kas_address(&gitlab), "wss://kas.gitlab.com");
        gitlab.url = "https://git.example.com/gitlab/".into();
        assert_eq!(
            kas_address(&gitlab),
            "wss://git.example.com/gitlab/-/kubernetes-agent/"
        );
        gitlab.url = "http://gitlab.lab".into();
        assert_eq!(kas_address(&gitlab), "ws://gitlab.lab/-/kubernetes-agent/");
        gitlab.kas_address = Some("wss://kas.lab".into());
        assert_eq!(kas_address(&gitlab), "wss://kas.lab");
    }

    #[test]
    fn real_tokens_replace_placeholders_and_debug_hides_them() {
        let inventory = ha_inventory();
        let tokens = GitLabTokens {
            agent: Some(SecretString::from("glagent-secret-agent")),
            runner: Some(SecretString::from("glrt-secret-runner")),
        };
        let files = render_gitlab(
            &Renderer::builtin(),
            "edge-ha",
            inventory.gitlab.as_ref().unwrap(),
            &tokens,
            &ClusterFacts::default(),
            None,
        )
        .unwrap();
        assert!(files.holds_secrets);
        assert!(files.agent_values.contains("glagent-secret-agent"));
        let runner = files.runner.as_ref().unwrap();
        assert!(runner.helmchart.contains("glrt-secret-runner"));
        assert!(!runner.values.contains(RUNNER_TOKEN_PLACEHOLDER));
        let debug = format!("{files:?}");
        assert!(!debug.contains("secret-"), "{debug}");
    }

    #[test]
    fn runner_values_hold_nothing_current_runners_refuse() {
        // With a glrt- token the runner refuses tags, locked, run-untagged and the other
        // settings that moved to the API, and GitLab 17+ refuses registration tokens: the
        // built-in values must carry none of them, whatever the inventory's tags say.
        for inventory in [ha_inventory(), pi_inventory()] {
            let gitlab = inventory.gitlab.as_ref().unwrap();
            assert!(!gitlab.runner.tags.is_empty());
            let files = render_gitlab(
                &Renderer::builtin(),
                "edge",
                gitlab,
                &GitLabTokens {
                    agent: None,
                    runner: Some(SecretString::from("glrt-secret-runner")),
                },
                &ClusterFacts::default(),
                None,
            )
            .unwrap();
            let values: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&files.runner.as_ref().unwrap().values).unwrap();
            assert!(values.get("runnerRegistrationToken").is_none());
            assert_eq!(values["runnerToken"].as_str(), Some("glrt-secret-runner"));
            let runners = values["runners"].as_mapping().unwrap();
            let keys: Vec<&str> = runners.keys().filter_map(|k| k.as_str()).collect();
            assert_eq!(keys, ["config"], "only the executor configuration");
            let config = values["runners"]["config"].as_str().unwrap();
            for reserved in [
                "tag_list",
                "locked",
                "run_untagged",
                "maximum_timeout",
                "paused",
            ] {
                assert!(!config.contains(reserved), "{reserved} in {config}");
            }
        }
    }

    #[test]
    fn user_access_is_rendered_when_given() {
        let gitlab = pi_inventory().gitlab.unwrap();
        let files = render_gitlab(
            &Renderer::builtin(),
            "pi-lab",
            &gitlab,
            &GitLabTokens::default(),
            &ClusterFacts::default(),
            Some(UserAccess {
                access_as: "agent".into(),
                projects: vec!["edge-team/dashboards".into()],
                groups: vec![],
            }),
        )
        .unwrap();
        let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&files.agent_config).unwrap();
        let access: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "{access_as: {agent: {}}, projects: [{id: edge-team/dashboards}]}",
        )
        .unwrap();
        assert_eq!(config["user_access"], access);
        assert_eq!(config["ci_access"]["groups"][0]["id"], "edge-team");
    }

    #[test]
    fn disabled_runner_renders_no_runner_files() {
        let mut gitlab = pi_inventory().gitlab.unwrap();
        gitlab.runner.enabled = false;
        let files = render_gitlab(
            &Renderer::builtin(),
            "pi-lab",
            &gitlab,
            &GitLabTokens::default(),
            &ClusterFacts::default(),
            None,
        )
        .unwrap();
        assert!(files.runner.is_none());
        assert!(!files.holds_secrets);
        assert_eq!(files.agent_config_path, ".gitlab/agents/pi-lab/config.yaml");
    }
}
