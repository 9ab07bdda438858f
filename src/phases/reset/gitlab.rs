//! `reset --gitlab`: after a whole-cluster reset whose first server was wiped, remove the
//! cluster's GitLab side (runner, agent tokens, agent, agent config file) through
//! [`GitLabClient::deregister`], and report each item as a [`GitLabReport`] row: `deleted`,
//! `already gone`, or `failed` with GitLab's answer. Nothing here runs on a host. It runs under
//! the lock still, so no `up` registers again while this removes.

use std::time::Instant;

use secrecy::SecretString;

use crate::engine::{Applied, Flow, HostId, same_line};

use crate::gitlab::{
    ClientOptions, DeregisterRequest, GitLabClient, PathOrId, Removal, agent_config_path,
};
use crate::inventory::GitLab;

use crate::phases::gitlab::{GitLabReport, GitLabRow, runner_spec};
use crate::phases::outcome::Status;

use super::outcome::Scope;
use super::state::ResetRun;

/// What `reset --gitlab` removes, and how to reach GitLab; read before any host is touched.
#[derive(Debug, Clone)]
pub struct GitLabReset {
    /// The instance URL, for the plan.
    pub url: String,
    pub request: DeregisterRequest,
    pub api_token: SecretString,
    pub client: ClientOptions,
}

impl GitLabReset {
    pub fn new(
        cluster: &str,
        gitlab: &GitLab,
        api_token: SecretString,
        client: ClientOptions,
    ) -> GitLabReset {
        GitLabReset {
            url: gitlab.url.trim_end_matches('/').to_owned(),
            request: DeregisterRequest {
                project: PathOrId::parse(&gitlab.project),
                agent_name: gitlab.agent_name.clone(),
                runner: runner_spec(cluster, gitlab).map(|spec| (spec.scope, spec.description)),
            },
            api_token,
            client,
        }
    }

    /// What will be removed, one line each, for the confirmation plan.
    pub fn plan(&self) -> Vec<String> {
        let request = &self.request;
        let mut lines = Vec::new();
        if let Some((scope, description)) = &request.runner {
            lines.push(format!(
                "runner {description} ({}, found by description)",
                scope.runner_type()
            ));
        }
        lines.push(format!(
            "agent {} in project {} and all its tokens",
            request.agent_name, request.project
        ));
        lines.push(format!(
            "agent config {} (deleted with a commit on the default branch)",
            agent_config_path(&request.agent_name)
        ));
        lines
    }
}

/// The first server, whose reset it follows, when `--gitlab` asked for it.
pub(super) fn first_if_gitlab(cx: &ResetRun) -> Vec<HostId> {
    if cx.scope == Scope::Cluster && cx.options.gitlab.is_some() {
        vec![cx.core.first]
    } else {
        Vec::new()
    }
}

pub(super) fn plan_gitlab(cx: &mut ResetRun, hosts: &[HostId]) -> Vec<(HostId, String)> {
    let Some(setup) = &cx.options.gitlab else {
        return Vec::new();
    };
    let line = format!("remove from {}: {}", setup.url, setup.plan().join("; "));
    same_line(hosts, &line)
}

/// `--gitlab`: remove the cluster from GitLab once its first server is reset; skipped (with the
/// way out) when it was not.
pub(super) fn clean_gitlab<'a>(cx: &'a mut ResetRun, _: &'a [HostId]) -> Applied<'a> {
    Box::pin(async move {
        let Some(setup) = cx.options.gitlab.clone() else {
            return Ok(Flow::Continue);
        };
        cx.gitlab = Some(if cx.first_reset() {
            cx.core
                .engine
                .note("gitlab: removing the cluster's runner, agent and agent config");
            run(&setup).await
        } else {
            GitLabReport::skipped(format!(
                "first server {} was not reset: the cluster's agent and runner are left in \
                 GitLab; re-run `reset --gitlab` once it is",
                cx.core.first_name()
            ))
        });
        Ok(Flow::Continue)
    })
}

/// Remove everything; never fails as a whole: each row says what happened.
pub async fn run(setup: &GitLabReset) -> GitLabReport {
    let started = Instant::now();
    let client = match GitLabClient::new(&setup.url, setup.api_token.clone(), setup.client.clone())
    {
        Ok(client) => client,
        Err(error) => {
            return GitLabReport {
                status: Status::Failed,
                reason: Some(error.to_string()),
                rows: Vec::new(),
                commands: 0,
                seconds: started.elapsed().as_secs_f64(),
            };
        }
    };
    let removed = client.deregister(&setup.request).await;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut deleted = false;
    for item in removed {
        let (result, detail) = match &item.outcome {
            Ok(Removal::Deleted) => {
                deleted = true;
                ("deleted", item.detail.clone())
            }
            Ok(Removal::AlreadyGone) => ("already gone", item.detail.clone()),
            Err(error) => {
                failures.push(format!("{} {}", item.item, item.name));
                let answer = error.to_string();
                let detail = if item.detail.is_empty() {
                    answer
                } else {
                    format!("{}: {answer}", item.detail)
                };
                ("failed", detail)
            }
        };
        rows.push(GitLabRow {
            item: item.item.to_owned(),
            name: item.name,
            result: result.to_owned(),
            detail,
        });
    }
    let (status, reason) = if !failures.is_empty() {
        (
            Status::Failed,
            Some(format!(
                "could not remove {} from GitLab (see the rows); fix the cause and re-run \
                 `reset --gitlab`",
                failures.join(", ")
            )),
        )
    } else if deleted {
        (Status::Done, None)
    } else {
        (Status::Unchanged, None)
    };
    GitLabReport {
        status,
        reason,
        rows,
        commands: 0,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k3s::test_inventory::pi_inventory;

    #[test]
    fn the_plan_names_the_runner_agent_and_config_but_no_token() {
        let inventory = pi_inventory();
        let gitlab = inventory.gitlab.as_ref().unwrap();
        let setup = GitLabReset::new(
            "pi-lab",
            gitlab,
            SecretString::from("glpat-NEVER-SHOWN"),
            ClientOptions::default(),
        );
        let plan = setup.plan().join("\n");
        assert!(plan.contains("runner edgeops:pi-lab (group_type"), "{plan}");
        assert!(
            plan.contains(&format!("agent {}", gitlab.agent_name)),
            "{plan}"
        );
        assert!(
            plan.contains(&agent_config_path(&gitlab.agent_name)),
            "{plan}"
        );
        assert!(!plan.contains("glpat-NEVER-SHOWN"));
        assert!(!format!("{setup:?}").contains("glpat-NEVER-SHOWN"));

        let mut off = gitlab.clone();
        off.runner.enabled = false;
        let setup = GitLabReset::new(
            "pi-lab",
            &off,
            SecretString::from("x"),
            ClientOptions::default(),
        );
        assert!(setup.request.runner.is_none());
        assert!(!setup.plan().join("\n").contains("runner"));
    }
}
