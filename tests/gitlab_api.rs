//! The GitLab client against the local GitLab double: registration from empty, idempotent
//! re-runs, token reuse and rotation, each error status's message, retries, pagination, and that
//! no token ever shows in an error or a Debug rendering.

mod gitlab_double;

use std::time::Duration;

use edgeops::gitlab::{
    ClientOptions, DeregisterRequest, ExistingTokens, FileChange, FileCommit, GitLabClient,
    GitLabError, Outcome, ProjectRef, RegisterRequest, Registration, Removal, RunnerScope,
    RunnerSpec, TokenSource,
};
use gitlab_double::{Fault, GitLabDouble, Role};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

const TOKEN: &str = "glpat-TESTSECRET-0123456789abcdef";
const PROJECT: &str = "edge/fleet";
const AGENT: &str = "pi-lab";
const CONFIG: &str = "ci_access:\n  projects:\n    - id: edge/fleet\n";
const CONFIG_PATH: &str = ".gitlab/agents/pi-lab/config.yaml";

/// Short backoff so 5xx retries do not slow the suite; `Retry-After` is still honoured.
fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(2),
    }
}

fn client(double: &GitLabDouble, token: &str) -> GitLabClient {
    GitLabClient::new(&double.url(), SecretString::from(token), options()).expect("client")
}

/// A double with the project and a Maintainer token with scope `api`.
async fn seeded() -> (GitLabDouble, GitLabClient, u64) {
    let double = GitLabDouble::start().await;
    double.add_token(TOKEN, &["api"], Role::Maintainer);
    let project_id = double.add_project(PROJECT, Some("main"));
    let client = client(&double, TOKEN);
    (double, client, project_id)
}

fn runner_spec(scope: RunnerScope) -> RunnerSpec {
    RunnerSpec {
        scope,
        description: "edgeops:pi-lab".to_owned(),
        tags: vec!["arm64".to_owned(), "k3s".to_owned()],
        run_untagged: false,
        locked: true,
    }
}

fn request(existing: ExistingTokens, rotate_tokens: bool) -> RegisterRequest {
    RegisterRequest {
        project: ProjectRef::parse(PROJECT),
        agent_name: AGENT.to_owned(),
        agent_config: Some(CONFIG.to_owned()),
        runner: Some(runner_spec(RunnerScope::Project(ProjectRef::parse(
            PROJECT,
        )))),
        existing,
        rotate_tokens,
    }
}

fn stored(registration: &Registration) -> ExistingTokens {
    ExistingTokens {
        agent: Some(registration.agent_token.token.clone()),
        runner: Some(
            registration
                .runner
                .as_ref()
                .expect("runner registered")
                .token
                .token
                .clone(),
        ),
    }
}

fn mutations(double: &GitLabDouble) -> Vec<String> {
    double
        .log()
        .into_iter()
        .filter(|logged| logged.method != "GET")
        .map(|logged| format!("{} {}", logged.method, logged.path))
        .collect()
}

#[tokio::test]
async fn full_registration_from_empty_creates_everything() {
    let (double, client, project_id) = seeded().await;

    let registration = client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("registration");

    assert_eq!(registration.project_id, project_id);
    assert_eq!(registration.branch, "main");
    assert_eq!(registration.agent_config, Some(FileChange::Created));
    assert_eq!(registration.agent_outcome, Outcome::Created);
    assert_eq!(registration.agent.name, AGENT);
    assert_eq!(registration.agent_token.source, TokenSource::Created);
    assert!(
        registration
            .agent_token
            .token
            .expose_secret()
            .starts_with("glagent-")
    );
    let runner = registration.runner.as_ref().expect("runner");
    assert_eq!(runner.outcome, Outcome::Created);
    assert_eq!(runner.token.source, TokenSource::Created);
    assert!(runner.token.token.expose_secret().starts_with("glrt-"));

    let state = double.state();
    assert_eq!(state.agents.len(), 1);
    assert_eq!(state.agent_tokens.iter().filter(|t| t.active).count(), 1);
    assert_eq!(state.runners.len(), 1);
    let created = &state.runners[0];
    assert_eq!(created.id, runner.runner_id);
    assert_eq!(created.runner_type, "project_type");
    assert_eq!(created.owner_id, Some(project_id));
    assert_eq!(created.description, "edgeops:pi-lab");
    assert_eq!(created.tags, vec!["arm64", "k3s"]);
    assert!(!created.run_untagged);
    assert!(created.locked);
    assert!(!created.paused);
    assert_eq!(created.secret, runner.token.token.expose_secret());
    let project = &state.projects[0];
    assert_eq!(
        project
            .files
            .get(&("main".to_owned(), CONFIG_PATH.to_owned())),
        Some(&CONFIG.to_owned())
    );
    assert_eq!(project.commits, 1);
    drop(state);

    let log = double.log();
    assert!(log.iter().all(|logged| logged.had_token));
    assert!(
        log.iter()
            .all(|logged| logged.user_agent.as_deref() == Some("edgeops/0.1.0"))
    );
    assert!(
        log.iter()
            .any(|logged| logged.path == "/api/v4/projects/edge%2Ffleet"),
        "project path must be URL-encoded: {log:?}"
    );
    assert!(log.iter().any(|logged| logged.path
        == "/api/v4/projects/edge%2Ffleet/repository/files/.gitlab%2Fagents%2Fpi-lab%2Fconfig.yaml"));
}

#[tokio::test]
async fn rerun_with_stored_tokens_creates_nothing() {
    let (double, client, _) = seeded().await;
    let first = client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("first run");
    double.clear_log();

    let second = client
        .register(&request(stored(&first), false))
        .await
        .expect("second run");

    assert_eq!(mutations(&double), Vec::<String>::new());
    assert_eq!(second.agent_config, Some(FileChange::Unchanged));
    assert_eq!(second.agent_outcome, Outcome::Found);
    assert_eq!(second.agent.id, first.agent.id);
    assert_eq!(second.agent_token.source, TokenSource::Reused);
    assert!(!second.agent_token.is_new());
    let runner = second.runner.as_ref().expect("runner");
    assert_eq!(runner.outcome, Outcome::Found);
    assert_eq!(runner.token.source, TokenSource::Reused);
    assert!(!runner.settings_updated);
    assert_eq!(
        runner.runner_id,
        first.runner.as_ref().expect("runner").runner_id
    );
    assert_eq!(double.commits(), 1);
    assert_eq!(double.state().runners.len(), 1);
}

#[tokio::test]
async fn rerun_without_stored_tokens_reissues_tokens_but_no_second_agent_or_runner() {
    let (double, client, _) = seeded().await;
    let first = client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("first run");
    let first_agent_token = double.state().agent_tokens[0].id;
    double.clear_log();

    let second = client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("second run");

    assert_eq!(second.agent_outcome, Outcome::Found);
    assert_eq!(second.agent_token.source, TokenSource::Created);
    assert_ne!(
        second.agent_token.token.expose_secret(),
        first.agent_token.token.expose_secret()
    );
    assert_eq!(second.revoked_agent_tokens, vec![first_agent_token]);
    let runner = second.runner.as_ref().expect("runner");
    assert_eq!(runner.outcome, Outcome::Found);
    assert_eq!(runner.token.source, TokenSource::Created);
    let mutations = mutations(&double);
    assert!(
        !mutations
            .iter()
            .any(|line| line.ends_with("/cluster_agents") || line == "POST /api/v4/user/runners"),
        "no second agent or runner may be created: {mutations:?}"
    );
    let state = double.state();
    assert_eq!(state.agents.len(), 1);
    assert_eq!(state.runners.len(), 1);
    assert_eq!(state.agent_tokens.iter().filter(|t| t.active).count(), 1);
    assert_eq!(state.runners[0].secret, runner.token.token.expose_secret());
}

#[tokio::test]
async fn a_stored_agent_token_revoked_in_gitlab_is_replaced() {
    let (double, client, _) = seeded().await;
    let first = client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("first run");
    // Revoked by hand in the UI: the stored copy no longer lets the agent connect.
    double.state().agent_tokens[0].active = false;

    let second = client
        .register(&request(stored(&first), false))
        .await
        .expect("second run");

    assert_eq!(second.agent_outcome, Outcome::Found);
    assert_eq!(second.agent_token.source, TokenSource::Created);
    assert_ne!(
        second.agent_token.token.expose_secret(),
        first.agent_token.token.expose_secret()
    );
    assert_eq!(
        second.runner.as_ref().expect("runner").token.source,
        TokenSource::Reused
    );
    assert_eq!(double.state().agents.len(), 1);
}

#[tokio::test]
async fn changed_runner_tags_are_applied_to_the_existing_runner() {
    let (double, client, _) = seeded().await;
    let first = client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("first run");
    let mut changed = request(stored(&first), false);
    if let Some(runner) = changed.runner.as_mut() {
        runner.tags = vec!["arm64".to_owned(), "gpu".to_owned()];
    }
    double.clear_log();

    let second = client.register(&changed).await.expect("second run");

    let runner = second.runner.as_ref().expect("runner");
    assert!(runner.settings_updated);
    assert_eq!(runner.outcome, Outcome::Found);
    assert_eq!(
        mutations(&double),
        vec![format!("PUT /api/v4/runners/{}", runner.runner_id)]
    );
    assert_eq!(double.state().runners[0].tags, vec!["arm64", "gpu"]);
    assert_eq!(double.state().runners.len(), 1);
}

#[tokio::test]
async fn rotation_makes_room_under_the_two_token_limit_and_spares_foreign_tokens() {
    let (double, client, _) = seeded().await;
    let first = client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("first run");
    // Someone else's token on the same agent: with ours, the agent is at GitLab's limit of two.
    let project = ProjectRef::Id(first.project_id);
    let foreign = client
        .create_agent_token(&project, first.agent.id, "ci-deploy", "by hand")
        .await
        .expect("foreign token");

    let rotated = client
        .register(&request(stored(&first), true))
        .await
        .expect("rotation");

    assert_eq!(rotated.agent_token.source, TokenSource::Rotated);
    assert_eq!(double.state().agents.len(), 1);
    assert_eq!(double.state().runners.len(), 1);
    assert_eq!(rotated.revoked_agent_tokens.len(), 1);
    let runner = rotated.runner.as_ref().expect("runner");
    assert_eq!(runner.token.source, TokenSource::Rotated);
    assert_ne!(
        runner.token.token.expose_secret(),
        first
            .runner
            .as_ref()
            .expect("runner")
            .token
            .token
            .expose_secret()
    );
    let tokens = client
        .list_agent_tokens(&project, first.agent.id)
        .await
        .expect("tokens");
    let active: Vec<_> = tokens.iter().filter(|t| t.is_active()).collect();
    assert_eq!(active.len(), 2, "{tokens:?}");
    assert!(active.iter().any(|t| t.id == foreign.id));
}

#[tokio::test]
async fn pagination_finds_an_agent_on_page_three() {
    let (double, client, project_id) = seeded().await;
    double.set_page_size(2);
    for name in ["a-1", "a-2", "a-3", "a-4"] {
        double.add_agent(project_id, name);
    }
    let agent_id = double.add_agent(project_id, AGENT);

    let (agent, outcome) = client
        .find_or_create_agent(&ProjectRef::parse(PROJECT), AGENT)
        .await
        .expect("find");

    assert_eq!(outcome, Outcome::Found);
    assert_eq!(agent.id, agent_id);
    let pages: Vec<String> = double
        .log()
        .iter()
        .filter(|logged| logged.path.ends_with("/cluster_agents"))
        .map(|logged| format!("{} {:?}", logged.method, logged.query.get("page")))
        .collect();
    assert_eq!(
        pages,
        vec!["GET Some(\"1\")", "GET Some(\"2\")", "GET Some(\"3\")"]
    );
    assert!(
        double
            .log()
            .iter()
            .all(|logged| logged.query.get("per_page").is_none_or(|n| n == "100"))
    );
}

#[tokio::test]
async fn unchanged_file_makes_no_commit() {
    let (double, client, _) = seeded().await;
    let project = ProjectRef::parse(PROJECT);
    let put = |content: &'static str| {
        let client = &client;
        let project = project.clone();
        async move {
            client
                .put_file_if_changed(&FileCommit {
                    project: &project,
                    path: CONFIG_PATH,
                    branch: "main",
                    content,
                    message: "edgeops: config",
                })
                .await
                .expect("put file")
        }
    };

    assert_eq!(put(CONFIG).await, FileChange::Created);
    double.clear_log();
    assert_eq!(put(CONFIG).await, FileChange::Unchanged);
    assert_eq!(mutations(&double), Vec::<String>::new());
    assert_eq!(double.commits(), 1);

    assert_eq!(put("ci_access: {}\n").await, FileChange::Updated);
    assert_eq!(double.requests_with_method("PUT").len(), 1);
    assert_eq!(double.commits(), 2);
}

#[tokio::test]
async fn empty_repository_gets_the_config_on_main() {
    let double = GitLabDouble::start().await;
    double.add_token(TOKEN, &["api"], Role::Maintainer);
    double.add_project(PROJECT, None);
    let registration = client(&double, TOKEN)
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("registration");
    assert_eq!(registration.branch, "main");
    assert_eq!(registration.agent_config, Some(FileChange::Created));
    assert_eq!(
        double.state().projects[0].default_branch.as_deref(),
        Some("main")
    );
}

#[tokio::test]
async fn group_runner_is_created_once_and_found_by_description() {
    let (double, client, _) = seeded().await;
    double.add_token("glpat-OWNER-abcdef", &["api"], Role::Owner);
    let group_id = double.add_group("edge");
    let owner = self::client(&double, "glpat-OWNER-abcdef");
    let mut wanted = request(ExistingTokens::default(), false);
    wanted.runner = Some(runner_spec(RunnerScope::Group(ProjectRef::parse("edge"))));

    let first = owner.register(&wanted).await.expect("first run");
    let second = owner
        .register(&RegisterRequest {
            existing: stored(&first),
            ..wanted
        })
        .await
        .expect("second run");

    let state = double.state();
    assert_eq!(state.runners.len(), 1);
    assert_eq!(state.runners[0].runner_type, "group_type");
    assert_eq!(state.runners[0].owner_id, Some(group_id));
    assert_eq!(
        second.runner.as_ref().expect("runner").outcome,
        Outcome::Found
    );
    drop(state);
    assert!(
        double
            .log()
            .iter()
            .any(|logged| logged.path == "/api/v4/groups/edge/runners"
                && logged.query.get("type").map(String::as_str) == Some("group_type"))
    );
    drop(client);
}

#[tokio::test]
async fn unauthorized_401_says_the_token_is_invalid() {
    let (double, _, _) = seeded().await;
    let wrong = client(&double, "glpat-WRONGSECRET-999");

    let error = wrong
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect_err("wrong token");

    assert!(
        matches!(error, GitLabError::Unauthorized { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("GET /projects/edge%2Ffleet: GitLab answered 401"),
        "{message}"
    );
    assert!(message.contains("401 Unauthorized"), "{message}");
    assert!(message.contains("invalid or expired"), "{message}");
    assert!(message.contains("scope `api`"), "{message}");
    // 4xx answers are final: one request, no retries.
    assert_eq!(double.log().len(), 1);
}

#[tokio::test]
async fn forbidden_403_names_the_missing_scope_or_role() {
    let (double, _, _) = seeded().await;
    double.add_token("glpat-READONLY-1", &["read_api"], Role::Maintainer);
    double.add_token("glpat-DEVELOPER-1", &["api"], Role::Developer);
    let mut without_config = request(ExistingTokens::default(), false);
    without_config.agent_config = None;

    let scope_error = client(&double, "glpat-READONLY-1")
        .register(&without_config)
        .await
        .expect_err("read_api cannot register");
    assert!(
        matches!(scope_error, GitLabError::Forbidden { .. }),
        "{scope_error:?}"
    );
    let message = scope_error.to_string();
    assert!(
        message.starts_with(
            "POST /projects/edge%2Ffleet/cluster_agents: GitLab answered 403 Forbidden"
        ),
        "{message}"
    );
    assert!(
        message.contains("Maintainer role on project edge/fleet"),
        "{message}"
    );
    assert!(message.contains("insufficient_scope"), "{message}");
    assert!(message.contains("the token lacks scope `api`"), "{message}");
    assert!(message.contains("Maintainer role"), "{message}");

    let role_error = client(&double, "glpat-DEVELOPER-1")
        .register(&without_config)
        .await
        .expect_err("a Developer cannot register");
    let message = role_error.to_string();
    assert!(message.contains("(403 Forbidden)"), "{message}");
    assert!(
        message.contains("registering an agent needs a token with scope `api` whose user has at least the Maintainer role"),
        "{message}"
    );
}

#[tokio::test]
async fn not_found_404_names_the_project() {
    let (double, client, _) = seeded().await;
    let mut missing = request(ExistingTokens::default(), false);
    missing.project = ProjectRef::parse("edge/missing");

    let error = client.register(&missing).await.expect_err("no project");

    assert!(matches!(error, GitLabError::NotFound { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "GET /projects/edge%2Fmissing: GitLab answered 404 Not Found (404 Project Not Found): \
         project edge/missing not found or the token cannot see it; check the name or id, and \
         that the token's user is a member with access"
    );
    assert_eq!(double.log().len(), 1);
}

#[tokio::test]
async fn a_missing_project_is_not_mistaken_for_a_missing_file() {
    let (_double, client, _) = seeded().await;
    let error = client
        .get_file(&ProjectRef::parse("edge/missing"), CONFIG_PATH, "main")
        .await
        .expect_err("missing project");
    assert!(matches!(error, GitLabError::NotFound { .. }), "{error:?}");
    let missing_file = client
        .get_file(&ProjectRef::parse(PROJECT), CONFIG_PATH, "main")
        .await
        .expect("missing file is not an error");
    assert_eq!(missing_file, None);
}

#[tokio::test]
async fn rejected_400_409_422_quote_gitlabs_message_and_are_not_retried() {
    let (double, client, _) = seeded().await;
    let project = ProjectRef::parse(PROJECT);

    client.create_agent(&project, AGENT).await.expect("first");
    let taken = client
        .create_agent(&project, AGENT)
        .await
        .expect_err("name taken");
    assert!(
        matches!(taken, GitLabError::Rejected { status: 400, .. }),
        "{taken:?}"
    );
    assert!(
        taken
            .to_string()
            .contains("rejected the request with 400 (name: has already been taken)"),
        "{taken}"
    );

    double.fail_next(
        "POST",
        "/cluster_agents",
        1,
        Fault::Status {
            status: 409,
            body: json!({ "message": "Agent name conflicts with a pending registration" }),
        },
    );
    let conflict = client
        .create_agent(&project, "other")
        .await
        .expect_err("conflict");
    assert_eq!(conflict.status(), Some(409));
    assert!(
        conflict
            .to_string()
            .contains("409 (Agent name conflicts with a pending registration)"),
        "{conflict}"
    );

    double.clear_log();
    double.fail_next(
        "POST",
        "/user/runners",
        1,
        Fault::Status {
            status: 422,
            body: json!({ "message": { "tag_list": ["is too long"], "description": ["is invalid"] } }),
        },
    );
    let invalid = client
        .create_runner(&runner_spec(RunnerScope::Project(project.clone())))
        .await
        .expect_err("validation");
    assert!(
        matches!(invalid, GitLabError::Rejected { status: 422, .. }),
        "{invalid:?}"
    );
    let message = invalid.to_string();
    assert!(message.starts_with("POST /user/runners:"), "{message}");
    assert!(
        message.contains("description: is invalid; tag_list: is too long"),
        "{message}"
    );
    assert_eq!(
        double.requests_with_method("POST").len(),
        1,
        "4xx is not retried"
    );
}

#[tokio::test]
async fn redirects_are_reported_not_followed_with_the_token() {
    let (double, client, _) = seeded().await;
    double.fail_next(
        "GET",
        "/api/v4/projects/edge%2Ffleet",
        1,
        Fault::Redirect {
            status: 301,
            location: "https://elsewhere.example/api/v4/projects/edge%2Ffleet".to_owned(),
        },
    );

    let error = client
        .get_project(&ProjectRef::parse(PROJECT))
        .await
        .expect_err("redirect");

    assert!(
        matches!(error, GitLabError::Redirected { status: 301, .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("a redirect to https://elsewhere.example/api/v4/projects/edge%2Ffleet"),
        "{error}"
    );
    assert_eq!(double.log().len(), 1);
}

#[tokio::test]
async fn rate_limit_429_is_retried_after_retry_after_and_succeeds() {
    let (double, client, _) = seeded().await;
    double.fail_next(
        "GET",
        "/cluster_agents",
        2,
        Fault::RateLimit {
            retry_after_secs: 1,
        },
    );

    let agents = client
        .list_agents(&ProjectRef::parse(PROJECT))
        .await
        .expect("succeeds on the third attempt");

    assert!(agents.is_empty());
    let statuses: Vec<u16> = double.log().iter().map(|logged| logged.status).collect();
    assert_eq!(statuses, vec![429, 429, 200]);
}

#[tokio::test]
async fn rate_limit_429_exhausted_gives_rate_limited() {
    let (double, client, _) = seeded().await;
    double.fail_next(
        "GET",
        "/cluster_agents",
        3,
        Fault::RateLimit {
            retry_after_secs: 1,
        },
    );

    let error = client
        .list_agents(&ProjectRef::parse(PROJECT))
        .await
        .expect_err("all attempts limited");

    assert!(
        matches!(error, GitLabError::RateLimited { attempts: 3, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("/cluster_agents: GitLab answered 429 Too Many Requests"),
        "{message}"
    );
    assert!(message.contains("on all 3 attempts"), "{message}");
    assert_eq!(double.log().len(), 3);
}

#[tokio::test]
async fn server_500_is_retried_and_succeeds() {
    let (double, client, _) = seeded().await;
    double.fail_next(
        "POST",
        "/user/runners",
        2,
        Fault::Status {
            status: 500,
            body: json!({ "message": "500 Internal Server Error" }),
        },
    );

    let created = client
        .create_runner(&runner_spec(RunnerScope::Project(ProjectRef::parse(
            PROJECT,
        ))))
        .await
        .expect("third attempt succeeds");

    assert!(created.token.expose_secret().starts_with("glrt-"));
    assert_eq!(double.requests_with_method("POST").len(), 3);
    assert_eq!(double.state().runners.len(), 1);
}

#[tokio::test]
async fn server_500_exhausted_gives_server_error() {
    let (double, client, _) = seeded().await;
    double.fail_next(
        "GET",
        "/api/v4/projects/edge%2Ffleet",
        5,
        Fault::Status {
            status: 502,
            body: json!({ "message": "502 Bad Gateway" }),
        },
    );

    let error = client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect_err("GitLab down");

    assert!(
        matches!(
            error,
            GitLabError::Server {
                status: 502,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "GET /projects/edge%2Ffleet: GitLab answered 502 (502 Bad Gateway) on all 3 attempts; \
         GitLab is failing or under maintenance: check its status page and re-run later"
    );
}

#[tokio::test]
async fn a_server_that_hangs_up_gives_a_transport_error() {
    // Accept and close at once: no HTTP answer at all, deterministically (a closed port could
    // be reused by a parallel test's double).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hang_up = tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        }
    });
    let client = GitLabClient::new(
        &format!("http://{addr}"),
        SecretString::from(TOKEN),
        options(),
    )
    .expect("client");

    let error = client
        .get_project(&ProjectRef::parse(PROJECT))
        .await
        .expect_err("no answer");
    hang_up.abort();

    assert!(
        matches!(error, GitLabError::Transport { attempts: 3, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("GET /projects/edge%2Ffleet: no answer from GitLab after 3 attempt(s)"),
        "{message}"
    );
    assert!(message.contains("connection closed"), "{message}");
    assert!(!message.contains(TOKEN));
}

#[tokio::test]
async fn tokens_never_appear_in_errors_or_debug_output() {
    let (double, client, _) = seeded().await;
    let registration = client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("registration");
    let agent_secret = registration.agent_token.token.expose_secret().to_owned();
    let runner_secret = registration
        .runner
        .as_ref()
        .expect("runner")
        .token
        .token
        .expose_secret()
        .to_owned();
    let wrong_token = "glpat-WRONGSECRET-999";

    let rerun = request(stored(&registration), false);
    let mut rendered = vec![
        format!("{client:?}"),
        format!("{registration:?}"),
        format!("{rerun:?}"),
    ];
    let mut errors = Vec::new();
    errors.push(
        self::client(&double, wrong_token)
            .list_agents(&ProjectRef::parse(PROJECT))
            .await
            .expect_err("401"),
    );
    errors.push(
        client
            .list_agents(&ProjectRef::parse("edge/missing"))
            .await
            .expect_err("404"),
    );
    // A misbehaving proxy that echoes the credential back must not smuggle it into a message.
    double.fail_next(
        "GET",
        "/cluster_agents",
        1,
        Fault::Status {
            status: 403,
            body: json!({ "message": format!("token {TOKEN} is not allowed here") }),
        },
    );
    errors.push(
        client
            .list_agents(&ProjectRef::parse(PROJECT))
            .await
            .expect_err("403"),
    );
    double.fail_next(
        "GET",
        "/cluster_agents",
        3,
        Fault::Status {
            status: 500,
            body: json!({ "error": format!("crash near {TOKEN}") }),
        },
    );
    errors.push(
        client
            .list_agents(&ProjectRef::parse(PROJECT))
            .await
            .expect_err("500"),
    );
    for error in &errors {
        rendered.push(error.to_string());
        rendered.push(format!("{error:?}"));
    }
    assert!(rendered.iter().any(|text| text.contains("[redacted]")));

    for text in &rendered {
        for secret in [TOKEN, wrong_token, &agent_secret, &runner_secret] {
            assert!(!text.contains(secret), "a token leaked into: {text}");
        }
    }
    // Tokens travel in headers only, never in a URL.
    for logged in double.log() {
        let line = format!("{} {:?}", logged.path, logged.query);
        assert!(!line.contains(TOKEN), "token in URL: {line}");
    }
}

fn deregister_request() -> DeregisterRequest {
    DeregisterRequest {
        project: ProjectRef::parse(PROJECT),
        agent_name: AGENT.to_owned(),
        runner: Some((
            RunnerScope::Project(ProjectRef::parse(PROJECT)),
            "edgeops:pi-lab".to_owned(),
        )),
    }
}

#[tokio::test]
async fn delete_runner_agent_and_file_answer_204_then_404_is_already_gone() {
    let (double, client, _) = seeded().await;
    let registration = client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("register");
    let runner_id = registration.runner.as_ref().unwrap().runner_id;
    let project = ProjectRef::parse(PROJECT);
    let commits = double.commits();

    client
        .delete_runner(runner_id)
        .await
        .expect("delete runner");
    assert!(double.state().runners.is_empty());
    let again = client.delete_runner(runner_id).await.expect_err("gone");
    assert!(matches!(again, GitLabError::NotFound { .. }), "{again:?}");
    assert!(
        again.to_string().contains("404 Runner Not Found"),
        "{again}"
    );

    client
        .delete_agent(&project, registration.agent.id)
        .await
        .expect("delete agent");
    {
        let state = double.state();
        assert!(state.agents.is_empty());
        assert!(
            state.agent_tokens.is_empty(),
            "GitLab drops an agent's tokens with it"
        );
    }
    let again = client
        .delete_agent(&project, registration.agent.id)
        .await
        .expect_err("gone");
    assert!(matches!(again, GitLabError::NotFound { .. }), "{again:?}");

    assert!(
        client
            .delete_file(&project, CONFIG_PATH, "main", "edgeops: remove")
            .await
            .expect("delete file")
    );
    assert_eq!(double.commits(), commits + 1, "one commit for the deletion");
    assert!(double.state().projects[0].files.is_empty());
    // Absent: looked up, no DELETE sent, no commit.
    double.clear_log();
    assert!(
        !client
            .delete_file(&project, CONFIG_PATH, "main", "edgeops: remove")
            .await
            .expect("absent file")
    );
    assert!(double.requests_with_method("DELETE").is_empty());
    assert_eq!(double.commits(), commits + 1);
    let logged = double.log();
    assert_eq!(logged.len(), 1, "{logged:?}");
}

#[tokio::test]
async fn a_file_deleted_between_lookup_and_delete_is_already_gone() {
    let (double, client, project_id) = seeded().await;
    double.add_file(project_id, "main", CONFIG_PATH, CONFIG);
    double.fail_next(
        "DELETE",
        "/repository/files/",
        1,
        Fault::Status {
            status: 400,
            body: json!({ "message": "A file with this name doesn't exist" }),
        },
    );
    let deleted = client
        .delete_file(&ProjectRef::parse(PROJECT), CONFIG_PATH, "main", "m")
        .await
        .expect("taken as gone");
    assert!(!deleted);
}

#[tokio::test]
async fn deregister_removes_everything_then_says_already_gone() {
    let (double, client, project_id) = seeded().await;
    client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("register");
    // A second active token, as after a rotation made by hand: revoked too.
    let agent_id = double.state().agents[0].id;
    client
        .create_agent_token(&ProjectRef::parse(PROJECT), agent_id, "by-hand", "")
        .await
        .expect("second token");

    let removed = client.deregister(&deregister_request()).await;
    let summary: Vec<(&str, Removal)> = removed
        .iter()
        .map(|r| (r.item, *r.outcome.as_ref().expect("no failure")))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("runner", Removal::Deleted),
            ("agent token", Removal::Deleted),
            ("agent token", Removal::Deleted),
            ("agent", Removal::Deleted),
            ("agent config", Removal::Deleted),
        ]
    );
    {
        let state = double.state();
        assert!(state.runners.is_empty());
        assert!(state.agents.is_empty());
        assert!(state.agent_tokens.is_empty());
        let project = state.projects.iter().find(|p| p.id == project_id).unwrap();
        assert!(project.files.is_empty());
    }

    double.clear_log();
    let again = client.deregister(&deregister_request()).await;
    assert!(
        again
            .iter()
            .all(|r| matches!(r.outcome, Ok(Removal::AlreadyGone))),
        "{again:?}"
    );
    assert_eq!(again.len(), 4, "{again:?}");
    assert!(mutations(&double).is_empty(), "{:?}", mutations(&double));
}

#[tokio::test]
async fn deregister_reports_403_per_item_with_what_is_needed_and_goes_on() {
    let (double, maintainer, _) = seeded().await;
    maintainer
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("register");
    double.add_token("glpat-DEVELOPER-2", &["api"], Role::Developer);

    let removed = client(&double, "glpat-DEVELOPER-2")
        .deregister(&deregister_request())
        .await;
    // A Developer cannot list a project's runners nor manage its agent; every item was tried.
    let failed: Vec<String> = removed
        .iter()
        .filter_map(|r| r.outcome.as_ref().err().map(|e| format!("{} {e}", r.item)))
        .collect();
    assert!(
        failed.iter().any(|m| m.starts_with(
            "runner GET /projects/edge%2Ffleet/runners: GitLab answered 403 Forbidden"
        )),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|m| m.contains("agent token")
            && m.contains(
                "needs a token with scope `api` whose user has at least the Maintainer role"
            )),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(
            |m| m.starts_with("agent DELETE /projects/edge%2Ffleet/cluster_agents/")
                && m.contains("deleting an agent needs")
        ),
        "{failed:?}"
    );
    assert_eq!(double.state().agents.len(), 1, "nothing deleted");
    assert_eq!(double.state().runners.len(), 1);

    // Scope: a read_api token is told which scope it lacks.
    double.add_token("glpat-READONLY-2", &["read_api"], Role::Maintainer);
    let runner_id = double.state().runners[0].id;
    let error = client(&double, "glpat-READONLY-2")
        .delete_runner(runner_id)
        .await
        .expect_err("read_api cannot delete");
    assert!(matches!(error, GitLabError::Forbidden { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("the token lacks scope `api`"), "{message}");
    assert!(message.contains("deleting a runner needs"), "{message}");
    assert!(!message.contains(TOKEN) && !message.contains("glpat-READONLY-2"));
}

#[tokio::test]
async fn an_agent_deleted_between_lookup_and_delete_is_already_gone() {
    let (double, client, project_id) = seeded().await;
    double.add_agent(project_id, AGENT);
    double.fail_next(
        "DELETE",
        "/cluster_agents/",
        1,
        Fault::Status {
            status: 404,
            body: json!({ "message": "404 Not found" }),
        },
    );
    let mut request = deregister_request();
    request.runner = None;
    let removed = client.deregister(&request).await;
    let agent = removed
        .iter()
        .find(|r| r.item == "agent")
        .expect("agent row");
    assert!(
        matches!(agent.outcome, Ok(Removal::AlreadyGone)),
        "{agent:?}"
    );
    let tokens = removed.iter().find(|r| r.item == "agent token").unwrap();
    assert_eq!(tokens.detail, "none active");
}
