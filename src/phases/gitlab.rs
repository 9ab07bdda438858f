//! The GitLab phase of `up` (and its read-only halves for `plan` and `status`): once the cluster
//! is up, register the agent and runner in GitLab (reusing the tokens kept on the first server),
//! write the gitlab-agent and gitlab-runner HelmChart manifests into the first server's
//! auto-deploy folder only when they changed, and wait until k3s reports both charts deployed.
//! Its result is a [`GitLabReport`] of its own, beside the per-host rows. What it writes and
//! waits for (the charts, their manifests) is `crate::k3s::gitlab_charts`; what it keeps on the
//! first server and reads back, `crate::host::gitlab_state`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::gitlab::{
    ClientOptions, ExistingTokens, FileChange, GitLabClient, IssuedToken, Outcome, PathOrId,
    RegisterRequest, Registration, RunnerScope, RunnerSpec, TokenSource,
};
use crate::inventory::{GitLab, Inventory, RunnerType};
use crate::k3s::helmcharts::{
    CHARTS_COMMAND, ChartListing, ChartSource, ChartState, MANIFESTS_DIR,
};
use crate::render::Renderer;
use crate::render::gitlab::{ClusterFacts, GitLabTokens, render_gitlab};
use crate::ssh::{ExecOutput, ExecRequest, upload_request, upload_result};

use super::Progress;
use super::host_status::Status;
use crate::engine::{Engine, HostId, Output};
use crate::host::fold;
use crate::host::gitlab_state::{
    self, HostLook, SECRET_MODE, SECRET_OWNER, StoredTokens, TOKENS_PATH, TokenOwner,
};
use crate::k3s::gitlab_charts::{
    HELMCHART_NAMESPACE, chart_detail, chart_names, manifest_values, manifests,
};

/// The phase's name in progress events and the report.
pub const PHASE: &str = "gitlab";

/// Pause between two looks at the charts.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// What `up` needs for the GitLab phase beyond the inventory.
#[derive(Debug, Clone)]
pub struct GitLabSetup {
    /// The API token (`[gitlab] token_env` / `token_file`); `None` for `plan`, which calls no
    /// GitLab endpoint.
    pub api_token: Option<SecretString>,
    /// Issue new agent and runner tokens even when stored ones work.
    pub rotate_tokens: bool,
    /// How long to wait for the charts to report deployed.
    pub deploy_timeout: Duration,
    pub client: ClientOptions,
}

/// What the GitLab phase did (or would do, or found), for the report and `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct GitLabReport {
    /// `done` (something created or written), `unchanged`, `failed`, `skipped`, `planned`.
    pub status: Status,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
    pub rows: Vec<GitLabRow>,
    /// Remote commands run on the first server for this phase.
    pub commands: u32,
    pub seconds: f64,
}

impl GitLabReport {
    pub fn is_failure(&self) -> bool {
        matches!(self.status, Status::Failed | Status::Skipped)
    }

    /// Not attempted because `why` (the first server failed).
    pub fn skipped(why: impl Into<String>) -> GitLabReport {
        GitLabReport {
            status: Status::Skipped,
            reason: Some(why.into()),
            rows: Vec::new(),
            commands: 0,
            seconds: 0.0,
        }
    }
}

/// One line of the GitLab table: a thing in GitLab or on the first server, and what became of it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GitLabRow {
    /// `agent`, `runner token`, `manifest`, `chart`, ...
    pub item: String,
    /// Which one: the agent's name, a file path, a chart name.
    pub name: String,
    /// `created`, `found`, `reused`, `written`, `unchanged`, `deployed`, `would create`, ...
    pub result: String,
    /// More about it (ids, why it is pending); never a secret.
    pub detail: String,
}

impl GitLabRow {
    fn new(item: &str, name: impl Into<String>, result: impl Into<String>) -> GitLabRow {
        GitLabRow {
            item: item.to_owned(),
            name: name.into(),
            result: result.into(),
            detail: String::new(),
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> GitLabRow {
        self.detail = detail.into();
        self
    }
}

/// What the phase works with: the run's engine (every command on the first server goes through
/// it: logged, redacted, counted, its failure typed) and the first server.
pub struct PhaseContext<'a> {
    pub inventory: &'a Inventory,
    pub gitlab: &'a GitLab,
    pub renderer: &'a Renderer,
    pub engine: &'a Engine,
    pub first: HostId,
    /// The nodes' common architecture, for the runner's node selector.
    pub node_arch: Option<String>,
    /// `up` only: release the run's lock with the first chart poll (after the last write).
    pub lock_release: Option<LockRelease<'a>>,
}

/// The `up` lock to release with the phase's first read-only command after its writes
/// (`fold::then_release`), so it costs no round trip of its own.
pub struct LockRelease<'a> {
    pub run_id: &'a str,
    /// Set once the release ran on the host.
    pub released: &'a AtomicBool,
}

impl PhaseContext<'_> {
    fn first_name(&self) -> &str {
        self.engine.name(self.first)
    }

    /// Commands run on the first server so far (the phase's share is the difference).
    fn commands(&self) -> u32 {
        self.engine.busy(self.first).commands
    }
}

/// The phase's round trips on the first server, through the engine like every other step.
struct Remote<'a> {
    cx: &'a PhaseContext<'a>,
    /// The first server's command count when the phase started.
    commands_before: u32,
    /// The writes are done: the next command may carry the lock's release.
    release_armed: bool,
}

impl<'a> Remote<'a> {
    fn new(cx: &'a PhaseContext<'a>) -> Remote<'a> {
        Remote {
            cx,
            commands_before: cx.commands(),
            release_armed: false,
        }
    }

    /// The commands this phase ran on the first server.
    fn commands(&self) -> u32 {
        self.cx.commands() - self.commands_before
    }

    /// Run `request` to a zero exit; the error is the reason (redacted, with stderr's tail).
    async fn exec(
        &mut self,
        title: &str,
        mut request: ExecRequest,
        secret_output: bool,
    ) -> Result<ExecOutput, String> {
        let release = self
            .cx
            .lock_release
            .as_ref()
            .filter(|r| self.release_armed && !r.released.load(Ordering::SeqCst));
        if let Some(release) = release {
            request.command = fold::then_release(&request.command, release.run_id);
        }
        let output = if secret_output {
            Output::Secret
        } else {
            Output::Logged
        };
        let engine = self.cx.engine;
        let mut out = engine
            .exec(self.cx.first, title, &request, output)
            .await
            .map_err(|f| f.reason)?;
        if let Some(release) = release
            && fold::take_released(&mut out.stdout)
        {
            release.released.store(true, Ordering::SeqCst);
        }
        engine.checked(title, out, output).map_err(|f| f.reason)
    }

    /// Write `content` to `path` atomically, 0600 root:root; the content travels on stdin.
    async fn upload(&mut self, path: &str, content: &str) -> Result<(), String> {
        let request = upload_request(
            content.as_bytes(),
            path,
            SECRET_MODE,
            Some(SECRET_OWNER),
            true,
        );
        let engine = self.cx.engine;
        let title = format!("upload {path} (0600 root:root)");
        let out = engine
            .exec(self.cx.first, &title, &request, Output::Secret)
            .await
            .map_err(|f| f.reason)?;
        upload_result(self.cx.first_name(), path, &out)
            .map_err(|e| engine.log().redactor().redact(&e.to_string()))
    }

    /// The first server's GitLab files and stored tokens, in one round trip
    /// ([`gitlab_state::look_script`]).
    async fn look(&mut self, charts: &[String], create_dir: bool) -> Result<HostLook, String> {
        let request = ExecRequest::new(gitlab_state::look_script(charts, create_dir)).sudo(true);
        let out = self.exec("gitlab: look", request, true).await?;
        Ok(gitlab_state::parse_look(&out.stdout_lossy()))
    }

    async fn charts(&mut self) -> Result<ChartListing, String> {
        let out = self
            .exec(
                "gitlab: charts",
                ExecRequest::new(CHARTS_COMMAND).sudo(true),
                true,
            )
            .await?;
        ChartListing::parse(&out.stdout_lossy()).map_err(|e| format!("charts: {e}"))
    }

    /// Chart `name`'s state; when the cluster shows a failing container for it (the install
    /// job's, or a release pod that is not ready), one more command reads that container's log
    /// for the reason (never on a deployed chart, so a converged re-run costs nothing more).
    async fn chart_state(&mut self, listing: &ChartListing, name: &str) -> ChartState {
        let state = listing.state(HELMCHART_NAMESPACE, name);
        if !matches!(state, ChartState::Pending(_)) {
            return state;
        }
        let Some(watch) = listing.watch(HELMCHART_NAMESPACE, name) else {
            return state;
        };
        match self
            .exec(
                "gitlab: chart log",
                ExecRequest::new(watch.command()).sudo(true),
                false,
            )
            .await
        {
            Ok(out) => watch.verdict(&out.stdout_lossy()),
            Err(_) => state,
        }
    }
}

/// The runner edgeops wants in GitLab for this inventory; `None` when disabled.
pub fn runner_spec(cluster: &str, gitlab: &GitLab) -> Option<RunnerSpec> {
    let settings = &gitlab.runner;
    if !settings.enabled {
        return None;
    }
    let scope = match settings.runner_type {
        RunnerType::Instance => RunnerScope::Instance,
        // The inventory refuses a group runner without `group`; fall back to the project.
        RunnerType::Group => match &gitlab.group {
            Some(group) => RunnerScope::Group(PathOrId::parse(group)),
            None => RunnerScope::Project(PathOrId::parse(&gitlab.project)),
        },
        RunnerType::Project => RunnerScope::Project(PathOrId::parse(&gitlab.project)),
    };
    Some(RunnerSpec {
        // A project runner stays with its project; group and instance runners are shared.
        locked: matches!(scope, RunnerScope::Project(_)),
        scope,
        description: format!("edgeops:{cluster}"),
        tags: settings.tags.clone(),
        run_untagged: settings.run_untagged,
    })
}

fn token_word(token: &IssuedToken) -> &'static str {
    match token.source {
        TokenSource::Reused => "reused",
        TokenSource::Created => "created",
        TokenSource::Rotated => "rotated",
    }
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Found => "found",
        Outcome::Created => "created",
    }
}

/// The GitLab phase of `up`.
pub async fn up(cx: &PhaseContext<'_>, setup: &GitLabSetup) -> GitLabReport {
    let started = Instant::now();
    cx.engine.observer().event(&Progress::PhaseStart {
        phase: PHASE,
        hosts: 1,
    });
    cx.engine.observer().event(&Progress::HostStart {
        phase: PHASE,
        host: cx.first_name(),
    });
    let mut remote = Remote::new(cx);
    let mut rows = Vec::new();
    let result = converge(&mut remote, setup, &mut rows).await;
    let (status, reason) = match result {
        Ok(changed) => (
            if changed {
                Status::Done
            } else {
                Status::Unchanged
            },
            None,
        ),
        Err(reason) => (
            Status::Failed,
            Some(cx.engine.log().redactor().redact(&reason)),
        ),
    };
    // The host log says what happened in GitLab too, so a run can be read back in one place.
    let summary: String = rows
        .iter()
        .map(|r| format!("{} {}: {} {}\n", r.item, r.name, r.result, r.detail))
        .collect();
    cx.engine.log().write(
        cx.first_name(),
        &format!("gitlab: {}", reason.as_deref().unwrap_or("done")),
        &summary,
    );
    let detail = reason.clone().unwrap_or_else(|| {
        if status == Status::Done {
            "agent and runner deployed".to_owned()
        } else {
            "nothing to do".to_owned()
        }
    });
    cx.engine.observer().event(&Progress::HostDone {
        phase: PHASE,
        host: cx.first_name(),
        ok: reason.is_none(),
        detail: &detail,
    });
    cx.engine
        .observer()
        .event(&Progress::PhaseEnd { phase: PHASE });
    GitLabReport {
        status,
        reason,
        rows,
        commands: remote.commands(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Register, write what changed, wait for the charts. `Ok(true)` when anything was created or
/// written; each step leaves its row, so a failure shows how far it got.
async fn converge(
    remote: &mut Remote<'_>,
    setup: &GitLabSetup,
    rows: &mut Vec<GitLabRow>,
) -> Result<bool, String> {
    let cx = remote.cx;
    let gitlab = cx.gitlab;
    let cluster = &cx.inventory.cluster.name;
    let redactor = cx.engine.log().redactor();
    let api_token = setup
        .api_token
        .clone()
        .ok_or_else(|| "no GitLab API token".to_owned())?;
    redactor.add(api_token.expose_secret());

    let chart_names = chart_names(gitlab);
    let look = remote.look(&chart_names, true).await?;
    let owner = TokenOwner::of(gitlab);
    let stored = look.stored_tokens(&owner, redactor);

    // The agent config holds no token: render it first, it is committed during registration.
    let facts = ClusterFacts {
        node_arch: cx.node_arch.clone(),
    };
    let config = render_gitlab(
        cx.renderer,
        cluster,
        gitlab,
        &GitLabTokens::default(),
        &facts,
        None,
    )
    .map_err(|e| format!("templates: {e}"))?;
    let client = GitLabClient::new(&gitlab.url, api_token, setup.client.clone())
        .map_err(|e| e.to_string())?;
    let request = RegisterRequest {
        project: PathOrId::parse(&gitlab.project),
        agent_name: gitlab.agent_name.clone(),
        agent_config: Some(config.agent_config.clone()),
        runner: runner_spec(cluster, gitlab),
        existing: ExistingTokens {
            agent: stored.as_ref().and_then(|s| s.agent.clone()),
            runner: stored.as_ref().and_then(|s| s.runner.clone()),
        },
        rotate_tokens: setup.rotate_tokens,
    };
    let registration = client
        .register(&request)
        .await
        .map_err(|e| format!("GitLab: {e}"))?;
    redactor.add(registration.agent_token.token.expose_secret());
    if let Some(runner) = &registration.runner {
        redactor.add(runner.token.token.expose_secret());
    }
    let mut changed = registration_rows(&registration, gitlab, cluster, rows);

    // Keep the tokens before anything uses them: GitLab will not show them again.
    let tokens = StoredTokens {
        owner,
        agent: Some(registration.agent_token.token.clone()),
        runner: registration.runner.as_ref().map(|r| r.token.token.clone()),
    };
    let tokens_text = tokens.to_file();
    if look.holds(TOKENS_PATH, &tokens_text) {
        rows.push(GitLabRow::new("tokens file", TOKENS_PATH, "unchanged"));
    } else {
        remote.upload(TOKENS_PATH, &tokens_text).await?;
        rows.push(GitLabRow::new("tokens file", TOKENS_PATH, "written").detail("0600 root"));
        changed = true;
    }

    let files = render_gitlab(
        cx.renderer,
        cluster,
        gitlab,
        &GitLabTokens {
            agent: tokens.agent.clone(),
            runner: tokens.runner.clone(),
        },
        &facts,
        None,
    )
    .map_err(|e| format!("templates: {e}"))?;
    let manifests = manifests(gitlab, &files);
    // Charts whose manifest this run wrote: the cluster must show the new values before they
    // count as deployed (the old ones would report deployed right away).
    let mut fresh: Vec<(String, String)> = Vec::new();
    for manifest in &manifests {
        if look.holds(&manifest.path, &manifest.content) {
            rows.push(GitLabRow::new("manifest", &manifest.path, "unchanged"));
            continue;
        }
        remote.upload(&manifest.path, &manifest.content).await?;
        rows.push(GitLabRow::new("manifest", &manifest.path, "written").detail("0600 root"));
        changed = true;
        if let Some(values) = manifest_values(&manifest.content) {
            fresh.push((manifest.chart.clone(), values));
        }
    }

    // Nothing is written after this point: the first chart poll releases the `up` lock.
    remote.release_armed = true;
    wait_for_charts(remote, &chart_names, &fresh, setup.deploy_timeout, rows).await?;
    Ok(changed)
}

/// Rows for what registration found and made; whether it changed anything in GitLab.
fn registration_rows(
    registration: &Registration,
    gitlab: &GitLab,
    cluster: &str,
    rows: &mut Vec<GitLabRow>,
) -> bool {
    let mut changed = false;
    if let Some(change) = registration.agent_config {
        changed |= change.changed();
        rows.push(
            GitLabRow::new(
                "agent config",
                crate::gitlab::agent_config_path(&gitlab.agent_name),
                match change {
                    FileChange::Created => "committed",
                    FileChange::Updated => "updated",
                    FileChange::Unchanged => "unchanged",
                },
            )
            .detail(format!("{} on {}", gitlab.project, registration.branch)),
        );
    }
    changed |= registration.agent_outcome == Outcome::Created;
    rows.push(
        GitLabRow::new(
            "agent",
            &registration.agent.name,
            outcome_word(registration.agent_outcome),
        )
        .detail(format!("id {}", registration.agent.id)),
    );
    changed |= registration.agent_token.is_new();
    let revoked = &registration.revoked_agent_tokens;
    rows.push(
        GitLabRow::new(
            "agent token",
            crate::gitlab::AGENT_TOKEN_NAME,
            token_word(&registration.agent_token),
        )
        .detail(if revoked.is_empty() {
            String::new()
        } else {
            format!("revoked old token(s) {revoked:?}")
        }),
    );
    if let Some(runner) = &registration.runner {
        changed |= runner.outcome == Outcome::Created || runner.settings_updated;
        let mut detail = format!("id {}", runner.runner_id);
        if runner.settings_updated {
            detail.push_str(", tags/flags updated");
        }
        if !runner.duplicates.is_empty() {
            detail.push_str(&format!(
                ", other runners with this description left alone: {:?}",
                runner.duplicates
            ));
        }
        rows.push(
            GitLabRow::new(
                "runner",
                format!("edgeops:{cluster}"),
                outcome_word(runner.outcome),
            )
            .detail(detail),
        );
        changed |= runner.token.is_new();
        rows.push(GitLabRow::new(
            "runner token",
            format!("edgeops:{cluster}"),
            token_word(&runner.token),
        ));
    }
    changed
}

/// Poll the charts until every one is deployed (and, when just written, shows its new values),
/// or `timeout` passes; a chart the helm controller reports failed fails at once.
async fn wait_for_charts(
    remote: &mut Remote<'_>,
    charts: &[String],
    fresh: &[(String, String)],
    timeout: Duration,
    rows: &mut Vec<GitLabRow>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let (states, listing) = loop {
        let listing = match remote.charts().await {
            Ok(listing) => listing,
            Err(reason) if Instant::now() >= deadline => {
                return Err(format!("cannot read the HelmCharts: {reason}"));
            }
            Err(_) => {
                tokio::time::sleep(POLL_EVERY).await;
                continue;
            }
        };
        let mut states: Vec<(String, ChartState)> = Vec::with_capacity(charts.len());
        for name in charts {
            let stale = fresh.iter().any(|(chart, values)| {
                chart == name
                    && listing
                        .values_content(HELMCHART_NAMESPACE, name)
                        .is_none_or(|v| v.trim() != values)
            });
            let state = match listing.state(HELMCHART_NAMESPACE, name) {
                ChartState::Missing => ChartState::Missing,
                _ if stale => {
                    ChartState::Pending("k3s has not applied the new manifest yet".to_owned())
                }
                _ => remote.chart_state(&listing, name).await,
            };
            states.push((name.clone(), state));
        }
        let failed = states
            .iter()
            .any(|(_, s)| matches!(s, ChartState::Failed(_)));
        let all_deployed = states.iter().all(|(_, s)| *s == ChartState::Deployed);
        if all_deployed || failed || Instant::now() >= deadline {
            break (states, listing);
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    let mut problems = Vec::new();
    for (name, state) in &states {
        rows.push(
            GitLabRow::new("chart", name, state.word()).detail(chart_detail(&listing, name, state)),
        );
        if *state != ChartState::Deployed {
            let hint = state.hint().map(|h| format!(" ({h})")).unwrap_or_default();
            problems.push(format!("{name} {}: {}{hint}", state.word(), state.detail()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let waited = if states
            .iter()
            .any(|(_, s)| matches!(s, ChartState::Failed(_)))
        {
            String::new()
        } else {
            format!(" after {}", humantime::format_duration(timeout))
        };
        Err(format!(
            "charts not deployed{waited}: {}",
            problems.join("; ")
        ))
    }
}

/// `plan` / `up --dry-run`: what the GitLab phase would do, from the first server's files;
/// calls no GitLab endpoint at all (so needs no API token) and changes nothing.
pub async fn plan(cx: &PhaseContext<'_>, rotate_tokens: bool) -> GitLabReport {
    let started = Instant::now();
    let mut remote = Remote::new(cx);
    let gitlab = cx.gitlab;
    let cluster = &cx.inventory.cluster.name;
    let chart_names = chart_names(gitlab);
    let (look, look_error) = match remote.look(&chart_names, false).await {
        Ok(look) => (look, None),
        Err(reason) => (HostLook::default(), Some(reason)),
    };
    let stored = look.stored_tokens(&TokenOwner::of(gitlab), cx.engine.log().redactor());
    let mut rows = vec![
        GitLabRow::new(
            "agent config",
            crate::gitlab::agent_config_path(&gitlab.agent_name),
            "would commit if changed",
        )
        .detail(format!("{} on its default branch", gitlab.project)),
        GitLabRow::new("agent", &gitlab.agent_name, "would find or register")
            .detail(format!("project {}", gitlab.project)),
    ];
    let token_plan = |stored: Option<&SecretString>| match (stored, rotate_tokens) {
        (Some(_), false) => "would reuse the stored token",
        (Some(_), true) => "would rotate",
        (None, _) => "would create",
    };
    rows.push(GitLabRow::new(
        "agent token",
        crate::gitlab::AGENT_TOKEN_NAME,
        token_plan(stored.as_ref().and_then(|s| s.agent.as_ref())),
    ));
    if let Some(spec) = runner_spec(cluster, gitlab) {
        rows.push(
            GitLabRow::new("runner", &spec.description, "would find or create").detail(format!(
                "{}, tags [{}]",
                spec.scope.runner_type(),
                spec.tags.join(", ")
            )),
        );
        rows.push(GitLabRow::new(
            "runner token",
            &spec.description,
            token_plan(stored.as_ref().and_then(|s| s.runner.as_ref())),
        ));
    }
    // With the stored tokens the manifests can be rendered exactly as `up` would write them.
    let reusable = stored.as_ref().filter(|s| {
        !rotate_tokens && s.agent.is_some() && (s.runner.is_some() || !gitlab.runner.enabled)
    });
    let rendered = reusable.and_then(|s| {
        render_gitlab(
            cx.renderer,
            cluster,
            gitlab,
            &GitLabTokens {
                agent: s.agent.clone(),
                runner: s.runner.clone(),
            },
            &ClusterFacts {
                node_arch: cx.node_arch.clone(),
            },
            None,
        )
        .ok()
    });
    match &rendered {
        Some(files) => {
            for manifest in manifests(gitlab, files) {
                let result = if look.holds(&manifest.path, &manifest.content) {
                    "unchanged"
                } else {
                    "would write"
                };
                rows.push(GitLabRow::new("manifest", &manifest.path, result));
            }
        }
        None => {
            for name in &chart_names {
                rows.push(
                    GitLabRow::new(
                        "manifest",
                        format!("{MANIFESTS_DIR}/{name}.yaml"),
                        "would write",
                    )
                    .detail("with the tokens GitLab issues"),
                );
            }
        }
    }
    // Which chart, version and repository each manifest names (token placeholders are enough).
    let sources = rendered
        .or_else(|| {
            render_gitlab(
                cx.renderer,
                cluster,
                gitlab,
                &GitLabTokens::default(),
                &ClusterFacts {
                    node_arch: cx.node_arch.clone(),
                },
                None,
            )
            .ok()
        })
        .map(|files| manifests(gitlab, &files))
        .unwrap_or_default();
    for name in &chart_names {
        let source = sources
            .iter()
            .find(|m| &m.chart == name)
            .and_then(|m| ChartSource::from_manifest(&m.content));
        rows.push(
            GitLabRow::new("chart", name, "would wait until deployed")
                .detail(source.map(|s| s.describe()).unwrap_or_default()),
        );
    }
    GitLabReport {
        status: Status::Planned,
        reason: look_error.map(|e| format!("cannot read the first server's GitLab files: {e}")),
        rows,
        commands: remote.commands(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// `status`: each chart's state as the cluster reports it. Changes nothing.
pub async fn status(cx: &PhaseContext<'_>) -> GitLabReport {
    let started = Instant::now();
    let mut remote = Remote::new(cx);
    let names = chart_names(cx.gitlab);
    let (rows, reason) = match remote.charts().await {
        Ok(listing) => {
            let mut rows = Vec::with_capacity(names.len());
            for name in &names {
                let state = remote.chart_state(&listing, name).await;
                rows.push(
                    GitLabRow::new("chart", name, state.word())
                        .detail(chart_detail(&listing, name, &state)),
                );
            }
            (rows, None)
        }
        Err(reason) => (Vec::new(), Some(reason)),
    };
    let all_deployed = reason.is_none() && rows.iter().all(|r| r.result == "deployed");
    GitLabReport {
        status: if all_deployed {
            Status::Unchanged
        } else {
            Status::Planned
        },
        reason,
        rows,
        commands: remote.commands(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k3s::test_inventory::{ha_inventory, pi_inventory};

    #[test]
    fn runner_spec_follows_the_inventory() {
        let inventory = pi_inventory();
        let gitlab = inventory.gitlab.as_ref().unwrap();
        let spec = runner_spec("pi-lab", gitlab).unwrap();
        assert_eq!(spec.description, "edgeops:pi-lab");
        assert_eq!(spec.tags, gitlab.runner.tags);
        let mut off = gitlab.clone();
        off.runner.enabled = false;
        assert!(runner_spec("pi-lab", &off).is_none());
        assert_eq!(chart_names(&off), vec!["gitlab-agent-pi-lab".to_owned()]);
        let ha = ha_inventory();
        let names = chart_names(ha.gitlab.as_ref().unwrap());
        assert_eq!(names.len(), 2);
    }
}
