//! A GitLab test double: a real HTTP server on 127.0.0.1:0 that implements the REST endpoints
//! edgeops uses (projects, groups, cluster agents and their tokens, runners, repository files)
//! with in-memory state and GitLab's error shapes. Tests seed it, inject failures, and read its
//! request log. GitLab itself cannot run on our machines; this stands in for it.
//!
//! - `http`: the minimal HTTP/1.1 server plumbing.
//! - `routes`: the endpoints, auth/scope checks, pagination.

// Shared by every GitLab test binary; each uses a different part of the API.
#![allow(dead_code)]

mod http;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The role a token's user holds on every project and group (GitLab's roles, simplified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reporter,
    Developer,
    Maintainer,
    Owner,
}

/// A token the double accepts.
#[derive(Debug, Clone)]
pub struct Grant {
    pub scopes: Vec<String>,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct ProjectState {
    pub id: u64,
    pub path: String,
    pub default_branch: Option<String>,
    /// (branch, file path) → content.
    pub files: HashMap<(String, String), String>,
    pub commits: u32,
}

#[derive(Debug, Clone)]
pub struct GroupState {
    pub id: u64,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct AgentState {
    pub id: u64,
    pub project_id: u64,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct AgentTokenState {
    pub id: u64,
    pub agent_id: u64,
    pub name: String,
    pub description: String,
    pub active: bool,
    pub secret: String,
}

#[derive(Debug, Clone)]
pub struct RunnerState {
    pub id: u64,
    pub runner_type: String,
    pub owner_id: Option<u64>,
    pub description: String,
    pub tags: Vec<String>,
    pub run_untagged: bool,
    pub locked: bool,
    pub paused: bool,
    pub secret: String,
}

/// What an injected failure answers.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `Retry-After: seconds`.
    RateLimit { retry_after_secs: u64 },
    /// A redirect to `location`.
    Redirect { status: u16, location: String },
    /// Any status with a JSON body (500, 409, 422, ...).
    Status {
        status: u16,
        body: serde_json::Value,
    },
}

#[derive(Debug, Clone)]
struct FaultRule {
    method: String,
    path_contains: String,
    remaining: u32,
    fault: Fault,
}

/// One request as the double saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    /// Raw path, query excluded.
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub status: u16,
    pub user_agent: Option<String>,
    pub had_token: bool,
}

/// All in-memory GitLab state.
#[derive(Debug, Default)]
pub struct State {
    pub grants: HashMap<String, Grant>,
    pub projects: Vec<ProjectState>,
    pub groups: Vec<GroupState>,
    pub agents: Vec<AgentState>,
    pub agent_tokens: Vec<AgentTokenState>,
    pub runners: Vec<RunnerState>,
    /// Largest page served, whatever `per_page` asks: small, to exercise `X-Next-Page`.
    pub page_size: usize,
    faults: Vec<FaultRule>,
    pub log: Vec<Logged>,
    next_id: u64,
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// The running double. Dropping it stops the server.
pub struct GitLabDouble {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: JoinHandle<()>,
}

impl Drop for GitLabDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl GitLabDouble {
    /// Start on 127.0.0.1 with an ephemeral port, a page size of 2 and no data.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the GitLab double on 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State {
            page_size: 2,
            next_id: 100,
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Some(request) = http::read_request(&mut stream).await {
                        let response = routes::handle(&shared, &request);
                        http::write_response(&mut stream, &response).await;
                    }
                });
            }
        });
        Self {
            addr,
            state,
            server,
        }
    }

    /// The instance URL to give the client (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Direct access to the state, for seeding and assertions.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("double state lock")
    }

    /// Accept `token` with `scopes` and `role`.
    pub fn add_token(&self, token: &str, scopes: &[&str], role: Role) {
        self.state().grants.insert(
            token.to_owned(),
            Grant {
                scopes: scopes.iter().map(|scope| scope.to_string()).collect(),
                role,
            },
        );
    }

    /// A project at `path`; `default_branch` `None` means an empty repository.
    pub fn add_project(&self, path: &str, default_branch: Option<&str>) -> u64 {
        let mut state = self.state();
        let id = state.next_id();
        state.projects.push(ProjectState {
            id,
            path: path.to_owned(),
            default_branch: default_branch.map(str::to_owned),
            files: HashMap::new(),
            commits: 0,
        });
        id
    }

    pub fn add_group(&self, path: &str) -> u64 {
        let mut state = self.state();
        let id = state.next_id();
        state.groups.push(GroupState {
            id,
            path: path.to_owned(),
        });
        id
    }

    /// Register an agent directly (as if made in the UI).
    pub fn add_agent(&self, project_id: u64, name: &str) -> u64 {
        let mut state = self.state();
        let id = state.next_id();
        state.agents.push(AgentState {
            id,
            project_id,
            name: name.to_owned(),
        });
        id
    }

    /// Put a file on a branch directly (as if pushed).
    pub fn add_file(&self, project_id: u64, branch: &str, path: &str, content: &str) {
        let mut state = self.state();
        let project = state
            .projects
            .iter_mut()
            .find(|project| project.id == project_id)
            .expect("seeded project");
        project
            .files
            .insert((branch.to_owned(), path.to_owned()), content.to_owned());
    }

    pub fn set_page_size(&self, size: usize) {
        self.state().page_size = size.max(1);
    }

    /// The next `count` requests with `method` whose raw path contains `path_contains` answer
    /// `fault` instead of being served.
    pub fn fail_next(&self, method: &str, path_contains: &str, count: u32, fault: Fault) {
        self.state().faults.push(FaultRule {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            remaining: count,
            fault,
        });
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    pub fn clear_log(&self) {
        self.state().log.clear();
    }

    /// Logged requests with `method`.
    pub fn requests_with_method(&self, method: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|logged| logged.method == method)
            .collect()
    }

    /// Total commits made through the API in all projects.
    pub fn commits(&self) -> u32 {
        self.state()
            .projects
            .iter()
            .map(|project| project.commits)
            .sum()
    }
}
