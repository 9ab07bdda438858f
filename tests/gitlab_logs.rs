//! No token reaches the trace log: a registration with a retry runs under a TRACE-level
//! subscriber and the captured output is grepped for every token. A binary of its own, because
//! tracing's callsite caching makes scoped subscribers unreliable next to parallel tests.

mod gitlab_double;

use std::time::Duration;

use edgeops::gitlab::{
    ClientOptions, ExistingTokens, GitLabClient, ProjectRef, RegisterRequest, RunnerScope,
    RunnerSpec,
};
use gitlab_double::{Fault, GitLabDouble, Role};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

const TOKEN: &str = "glpat-TESTSECRET-0123456789abcdef";
const PROJECT: &str = "edge/fleet";

async fn seeded() -> (GitLabDouble, GitLabClient) {
    let double = GitLabDouble::start().await;
    double.add_token(TOKEN, &["api"], Role::Maintainer);
    double.add_project(PROJECT, Some("main"));
    let options = ClientOptions {
        initial_backoff: Duration::from_millis(10),
        ..ClientOptions::default()
    };
    let client =
        GitLabClient::new(&double.url(), SecretString::from(TOKEN), options).expect("client");
    (double, client)
}

fn request(existing: ExistingTokens, rotate_tokens: bool) -> RegisterRequest {
    RegisterRequest {
        project: ProjectRef::parse(PROJECT),
        agent_name: "pi-lab".to_owned(),
        agent_config: Some("ci_access: {}\n".to_owned()),
        runner: Some(RunnerSpec {
            scope: RunnerScope::Project(ProjectRef::parse(PROJECT)),
            description: "edgeops:pi-lab".to_owned(),
            tags: vec!["arm64".to_owned()],
            run_untagged: false,
            locked: true,
        }),
        existing,
        rotate_tokens,
    }
}

/// Collects everything a tracing subscriber writes.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_appear_in_trace_logs() {
    let captured = CapturedLog::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let (double, client) = seeded().await;
    double.fail_next(
        "GET",
        "/cluster_agents",
        1,
        Fault::Status {
            status: 503,
            body: json!({ "message": "503 Service Unavailable" }),
        },
    );
    let registration = client
        .register(&request(ExistingTokens::default(), false))
        .await
        .expect("registration");

    let log = String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("utf-8");
    assert!(log.contains("retrying"), "the retry must be logged: {log}");
    for secret in [
        TOKEN.to_owned(),
        registration.agent_token.token.expose_secret().to_owned(),
        registration
            .runner
            .as_ref()
            .expect("runner")
            .token
            .token
            .expose_secret()
            .to_owned(),
    ] {
        assert!(!log.contains(&secret), "a token leaked into the trace log");
    }
}
