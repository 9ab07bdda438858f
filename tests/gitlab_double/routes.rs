//! The double's endpoints: auth (401), scope and role checks (403, in GitLab's shapes), the
//! documented request/response fields, pagination headers, injected faults and the request log.

use std::sync::Mutex;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::http::{Request, Response, decode};
use super::{
    AgentState, AgentTokenState, Fault, Grant, Logged, ProjectState, Role, RunnerState, State,
};

/// Early exit with an error response.
type Served = Result<Response, Response>;

const READ: &[&str] = &["api", "read_api"];
const READ_FILE: &[&str] = &["api", "read_api", "read_repository"];
const WRITE: &[&str] = &["api"];
const CREATE_RUNNER: &[&str] = &["api", "create_runner"];

/// Serve one request and log it.
pub fn handle(shared: &Mutex<State>, request: &Request) -> Response {
    let mut state = shared.lock().expect("double state lock");
    let response = take_fault(&mut state, request)
        .unwrap_or_else(|| route(&mut state, request).unwrap_or_else(|error| error));
    state.log.push(Logged {
        method: request.method.clone(),
        path: request.raw_path.clone(),
        query: request.query.clone(),
        status: response.status,
        user_agent: request.headers.get("user-agent").cloned(),
        had_token: request.headers.contains_key("private-token"),
    });
    response
}

fn take_fault(state: &mut State, request: &Request) -> Option<Response> {
    let rule = state.faults.iter_mut().find(|rule| {
        rule.remaining > 0
            && rule.method == request.method
            && request.raw_path.contains(&rule.path_contains)
    })?;
    rule.remaining -= 1;
    Some(match &rule.fault {
        Fault::RateLimit { retry_after_secs } => {
            Response::json(429, json!({ "message": "429 Too Many Requests" }))
                .header("Retry-After", retry_after_secs.to_string())
        }
        Fault::Redirect { status, location } => {
            Response::empty(*status).header("Location", location.clone())
        }
        Fault::Status { status, body } => Response::json(*status, body.clone()),
    })
}

fn route(state: &mut State, request: &Request) -> Served {
    let Some(rest) = request.raw_path.strip_prefix("/api/v4/") else {
        return Err(Response::json(404, json!({ "error": "404 Not Found" })));
    };
    let segments: Vec<String> = rest.split('/').map(decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let grant = request
        .headers
        .get("private-token")
        .and_then(|token| state.grants.get(token))
        .cloned()
        .ok_or_else(|| Response::json(401, json!({ "message": "401 Unauthorized" })))?;
    let body: Value = if request.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&request.body)
            .map_err(|_| Response::json(400, json!({ "error": "body is not valid JSON" })))?
    };
    let method = request.method.as_str();
    match (method, segments.as_slice()) {
        ("GET", ["projects", project]) => {
            scope(&grant, READ)?;
            let project = &state.projects[find_project(state, project)?];
            Ok(Response::json(200, project_json(project)))
        }
        ("GET", ["groups", group]) => {
            scope(&grant, READ)?;
            let group = find_group(state, group)?;
            let group = &state.groups[group];
            Ok(Response::json(
                200,
                json!({ "id": group.id, "full_path": group.path }),
            ))
        }
        ("GET", ["projects", project, "cluster_agents"]) => {
            scope(&grant, READ)?;
            role(&grant, Role::Developer)?;
            let project_id = state.projects[find_project(state, project)?].id;
            let agents = state
                .agents
                .iter()
                .filter(|agent| agent.project_id == project_id)
                .map(|agent| agent_json(state, agent))
                .collect();
            Ok(paginate(state, request, agents))
        }
        ("POST", ["projects", project, "cluster_agents"]) => {
            scope(&grant, WRITE)?;
            let project_id = state.projects[find_project(state, project)?].id;
            role(&grant, Role::Maintainer)?;
            create_agent(state, project_id, &body)
        }
        ("GET", ["projects", project, "cluster_agents", agent, "tokens"]) => {
            scope(&grant, READ)?;
            let agent_id = find_agent(state, project, agent)?;
            role(&grant, Role::Maintainer)?;
            let tokens = state
                .agent_tokens
                .iter()
                .filter(|token| token.agent_id == agent_id)
                .map(agent_token_json)
                .collect();
            Ok(paginate(state, request, tokens))
        }
        ("POST", ["projects", project, "cluster_agents", agent, "tokens"]) => {
            scope(&grant, WRITE)?;
            let agent_id = find_agent(state, project, agent)?;
            role(&grant, Role::Maintainer)?;
            create_agent_token(state, agent_id, &body)
        }
        (
            "DELETE",
            [
                "projects",
                project,
                "cluster_agents",
                agent,
                "tokens",
                token,
            ],
        ) => {
            scope(&grant, WRITE)?;
            let agent_id = find_agent(state, project, agent)?;
            role(&grant, Role::Maintainer)?;
            let token = state
                .agent_tokens
                .iter_mut()
                .find(|t| t.agent_id == agent_id && t.id.to_string() == *token && t.active)
                .ok_or_else(|| not_found("404 Not found"))?;
            token.active = false;
            Ok(Response::empty(204))
        }
        // GitLab answers 204 and drops the agent's tokens with it; an unknown id is a 404.
        ("DELETE", ["projects", project, "cluster_agents", agent]) => {
            scope(&grant, WRITE)?;
            let agent_id = find_agent(state, project, agent)?;
            role(&grant, Role::Maintainer)?;
            state.agents.retain(|a| a.id != agent_id);
            state.agent_tokens.retain(|t| t.agent_id != agent_id);
            Ok(Response::empty(204))
        }
        ("POST", ["user", "runners"]) => {
            scope(&grant, CREATE_RUNNER)?;
            create_runner(state, &grant, &body)
        }
        ("GET", ["projects", project, "runners"]) => {
            scope(&grant, READ)?;
            let project_id = state.projects[find_project(state, project)?].id;
            role(&grant, Role::Maintainer)?;
            list_runners(state, request, "project_type", Some(project_id))
        }
        ("GET", ["groups", group, "runners"]) => {
            scope(&grant, READ)?;
            let group_id = state.groups[find_group(state, group)?].id;
            role(&grant, Role::Owner)?;
            list_runners(state, request, "group_type", Some(group_id))
        }
        ("GET", ["runners", "all"]) => {
            scope(&grant, READ)?;
            role(&grant, Role::Owner)?;
            list_runners(state, request, "instance_type", None)
        }
        ("GET", ["runners", runner]) => {
            scope(&grant, READ)?;
            let runner = &state.runners[find_runner(state, runner)?];
            let mut details = runner_json(runner);
            details["tag_list"] = json!(runner.tags);
            details["run_untagged"] = json!(runner.run_untagged);
            details["locked"] = json!(runner.locked);
            Ok(Response::json(200, details))
        }
        ("PUT", ["runners", runner]) => {
            scope(&grant, WRITE)?;
            let index = find_runner(state, runner)?;
            let runner = &mut state.runners[index];
            if let Some(description) = body["description"].as_str() {
                runner.description = description.to_owned();
            }
            if !body["tag_list"].is_null() {
                runner.tags = tag_list(&body["tag_list"]);
            }
            if let Some(flag) = body["run_untagged"].as_bool() {
                runner.run_untagged = flag;
            }
            if let Some(flag) = body["locked"].as_bool() {
                runner.locked = flag;
            }
            if let Some(flag) = body["paused"].as_bool() {
                runner.paused = flag;
            }
            Ok(Response::json(200, runner_json(runner)))
        }
        ("DELETE", ["runners", runner]) => {
            scope(&grant, WRITE)?;
            let index = find_runner(state, runner)?;
            state.runners.remove(index);
            Ok(Response::empty(204))
        }
        ("POST", ["runners", runner, "reset_authentication_token"]) => {
            scope(&grant, WRITE)?;
            let index = find_runner(state, runner)?;
            let id = state.runners[index].id;
            let secret = runner_secret(id, state.next_id());
            state.runners[index].secret = secret.clone();
            Ok(Response::json(
                201,
                json!({ "token": secret, "token_expires_at": null }),
            ))
        }
        ("GET", ["projects", project, "repository", "files", path]) => {
            scope(&grant, READ_FILE)?;
            let index = find_project(state, project)?;
            get_file(&state.projects[index], request, path)
        }
        ("POST" | "PUT", ["projects", project, "repository", "files", path]) => {
            scope(&grant, WRITE)?;
            let index = find_project(state, project)?;
            role(&grant, Role::Developer)?;
            write_file(&mut state.projects[index], method == "POST", path, &body)
        }
        ("DELETE", ["projects", project, "repository", "files", path]) => {
            scope(&grant, WRITE)?;
            let index = find_project(state, project)?;
            role(&grant, Role::Developer)?;
            delete_file(&mut state.projects[index], path, &body)
        }
        _ => Err(Response::json(404, json!({ "error": "404 Not Found" }))),
    }
}

fn scope(grant: &Grant, allowed: &[&str]) -> Result<(), Response> {
    if grant
        .scopes
        .iter()
        .any(|held| allowed.contains(&held.as_str()))
    {
        return Ok(());
    }
    Err(Response::json(
        403,
        json!({
            "error": "insufficient_scope",
            "error_description":
                "The request requires higher privileges than provided by the access token.",
            "scope": allowed.join(" "),
        }),
    ))
}

fn role(grant: &Grant, minimum: Role) -> Result<(), Response> {
    if grant.role >= minimum {
        Ok(())
    } else {
        Err(Response::json(403, json!({ "message": "403 Forbidden" })))
    }
}

fn not_found(message: &str) -> Response {
    Response::json(404, json!({ "message": message }))
}

fn bad_request(body: Value) -> Response {
    Response::json(400, body)
}

fn find_project(state: &State, key: &str) -> Result<usize, Response> {
    state
        .projects
        .iter()
        .position(|project| project.id.to_string() == key || project.path == key)
        .ok_or_else(|| not_found("404 Project Not Found"))
}

fn find_group(state: &State, key: &str) -> Result<usize, Response> {
    state
        .groups
        .iter()
        .position(|group| group.id.to_string() == key || group.path == key)
        .ok_or_else(|| not_found("404 Group Not Found"))
}

fn find_agent(state: &State, project: &str, agent: &str) -> Result<u64, Response> {
    let project_id = state.projects[find_project(state, project)?].id;
    state
        .agents
        .iter()
        .find(|candidate| candidate.project_id == project_id && candidate.id.to_string() == agent)
        .map(|agent| agent.id)
        .ok_or_else(|| not_found("404 Not found"))
}

fn find_runner(state: &State, runner: &str) -> Result<usize, Response> {
    state
        .runners
        .iter()
        .position(|candidate| candidate.id.to_string() == runner)
        .ok_or_else(|| not_found("404 Runner Not Found"))
}

/// Serve one page of `items`, with GitLab's pagination headers.
fn paginate(state: &State, request: &Request, items: Vec<Value>) -> Response {
    let asked: usize = request
        .query
        .get("per_page")
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let per_page = asked.clamp(1, 100).min(state.page_size);
    let page: usize = request
        .query
        .get("page")
        .and_then(|value| value.parse().ok())
        .unwrap_or(1)
        .max(1);
    let total_pages = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let next = if page < total_pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    Response::json(200, Value::Array(slice))
        .header("X-Page", page.to_string())
        .header("X-Per-Page", per_page.to_string())
        .header("X-Total", items.len().to_string())
        .header("X-Total-Pages", total_pages.to_string())
        .header("X-Next-Page", next)
}

fn project_json(project: &ProjectState) -> Value {
    json!({
        "id": project.id,
        "name": project.path.rsplit('/').next(),
        "path_with_namespace": project.path,
        "default_branch": project.default_branch,
    })
}

fn agent_json(state: &State, agent: &AgentState) -> Value {
    let project = state
        .projects
        .iter()
        .find(|project| project.id == agent.project_id)
        .map(project_json);
    json!({
        "id": agent.id,
        "name": agent.name,
        "config_project": project,
        "created_at": "2026-01-01T00:00:00.000Z",
        "created_by_user_id": 1,
    })
}

fn agent_token_json(token: &AgentTokenState) -> Value {
    json!({
        "id": token.id,
        "name": token.name,
        "description": token.description,
        "agent_id": token.agent_id,
        "status": if token.active { "active" } else { "revoked" },
        "created_at": "2026-01-01T00:00:00.000Z",
        "created_by_user_id": 1,
    })
}

fn runner_json(runner: &RunnerState) -> Value {
    json!({
        "id": runner.id,
        "description": runner.description,
        "runner_type": runner.runner_type,
        "paused": runner.paused,
        "active": !runner.paused,
        "is_shared": runner.runner_type == "instance_type",
        "name": null,
        "online": false,
        "status": "never_contacted",
    })
}

fn create_agent(state: &mut State, project_id: u64, body: &Value) -> Served {
    let name = body["name"]
        .as_str()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| bad_request(json!({ "error": "name is missing" })))?;
    if state
        .agents
        .iter()
        .any(|agent| agent.project_id == project_id && agent.name == name)
    {
        return Err(bad_request(
            json!({ "message": { "name": ["has already been taken"] } }),
        ));
    }
    let agent = AgentState {
        id: state.next_id(),
        project_id,
        name: name.to_owned(),
    };
    let answer = agent_json(state, &agent);
    state.agents.push(agent);
    Ok(Response::json(201, answer))
}

fn create_agent_token(state: &mut State, agent_id: u64, body: &Value) -> Served {
    let name = body["name"]
        .as_str()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| bad_request(json!({ "error": "name is missing" })))?;
    let active = state
        .agent_tokens
        .iter()
        .filter(|token| token.agent_id == agent_id && token.active)
        .count();
    if active >= 2 {
        return Err(bad_request(
            json!({ "message": "An agent can have only two active tokens at a time" }),
        ));
    }
    let id = state.next_id();
    let token = AgentTokenState {
        id,
        agent_id,
        name: name.to_owned(),
        description: body["description"].as_str().unwrap_or_default().to_owned(),
        active: true,
        secret: format!("glagent-dblSECRET{id:06}xQ7vLm2Rt9Kc4Wz8Np1Hs5Jd3Fg6"),
    };
    let mut answer = agent_token_json(&token);
    answer["token"] = json!(token.secret);
    state.agent_tokens.push(token);
    Ok(Response::json(201, answer))
}

fn create_runner(state: &mut State, grant: &Grant, body: &Value) -> Served {
    let runner_type = body["runner_type"].as_str().unwrap_or_default();
    let owner_id = match runner_type {
        "instance_type" => {
            role(grant, Role::Owner)?;
            None
        }
        "group_type" => {
            let id = id_field(body, "group_id")?;
            find_group(state, &id.to_string())?;
            role(grant, Role::Owner)?;
            Some(id)
        }
        "project_type" => {
            let id = id_field(body, "project_id")?;
            find_project(state, &id.to_string())?;
            role(grant, Role::Maintainer)?;
            Some(id)
        }
        _ => {
            return Err(bad_request(
                json!({ "error": "runner_type does not have a valid value" }),
            ));
        }
    };
    let tags = tag_list(&body["tag_list"]);
    let id = state.next_id();
    let secret = runner_secret(id, id);
    state.runners.push(RunnerState {
        id,
        runner_type: runner_type.to_owned(),
        owner_id,
        description: body["description"].as_str().unwrap_or_default().to_owned(),
        tags,
        run_untagged: body["run_untagged"].as_bool().unwrap_or(true),
        locked: body["locked"].as_bool().unwrap_or(false),
        paused: body["paused"].as_bool().unwrap_or(false),
        secret: secret.clone(),
    });
    Ok(Response::json(
        201,
        json!({ "id": id, "token": secret, "token_expires_at": null }),
    ))
}

/// GitLab lists a project's (or group's) own runners plus the wider ones it may use; `type`
/// narrows the list.
fn list_runners(state: &State, request: &Request, own_type: &str, owner: Option<u64>) -> Served {
    let wanted = request.query.get("type").map(String::as_str);
    let runners = state
        .runners
        .iter()
        .filter(|runner| {
            let own = runner.runner_type == own_type && runner.owner_id == owner;
            let shared = runner.runner_type == "instance_type";
            (own || shared) && wanted.is_none_or(|wanted| runner.runner_type == wanted)
        })
        .map(runner_json)
        .collect();
    Ok(paginate(state, request, runners))
}

/// GitLab accepts `tag_list` as a comma-separated string or an array.
fn tag_list(value: &Value) -> Vec<String> {
    match value {
        Value::String(list) => list
            .split(',')
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn id_field(body: &Value, field: &str) -> Result<u64, Response> {
    body[field]
        .as_u64()
        .or_else(|| body[field].as_str().and_then(|text| text.parse().ok()))
        .ok_or_else(|| bad_request(json!({ "error": format!("{field} is missing") })))
}

fn runner_secret(id: u64, serial: u64) -> String {
    format!("glrt-dblSECRET{id:05}{serial:05}Yt6Qa2Wm8Zr4")
}

fn branch_exists(project: &ProjectState, branch: &str) -> bool {
    project.default_branch.as_deref() == Some(branch)
        || project.files.keys().any(|(on, _)| on == branch)
}

fn get_file(project: &ProjectState, request: &Request, path: &str) -> Served {
    let branch = request
        .query
        .get("ref")
        .ok_or_else(|| bad_request(json!({ "error": "ref is missing" })))?;
    if !branch_exists(project, branch) {
        return Err(not_found("404 Commit Not Found"));
    }
    let content = project
        .files
        .get(&(branch.clone(), path.to_owned()))
        .ok_or_else(|| not_found("404 File Not Found"))?;
    Ok(Response::json(
        200,
        json!({
            "file_name": path.rsplit('/').next(),
            "file_path": path,
            "size": content.len(),
            "encoding": "base64",
            "content": base64(content.as_bytes()),
            "content_sha256": hex::encode(Sha256::digest(content.as_bytes())),
            "ref": branch,
            "blob_id": "0000000000000000000000000000000000000000",
            "commit_id": format!("{:040}", project.commits),
            "last_commit_id": format!("{:040}", project.commits),
        }),
    ))
}

fn write_file(project: &mut ProjectState, create: bool, path: &str, body: &Value) -> Served {
    let field = |name: &str| {
        body[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad_request(json!({ "error": format!("{name} is missing") })))
    };
    let branch = field("branch")?;
    let content = field("content")?;
    field("commit_message")?;
    if body["encoding"]
        .as_str()
        .is_some_and(|encoding| encoding != "text")
    {
        return Err(bad_request(
            json!({ "error": "this double accepts text content only" }),
        ));
    }
    let empty_repository = project.default_branch.is_none() && project.files.is_empty();
    if !empty_repository && !branch_exists(project, &branch) {
        return Err(bad_request(json!({
            "message": "You can only create or edit files when you are on a branch"
        })));
    }
    let key = (branch.clone(), path.to_owned());
    let exists = project.files.contains_key(&key);
    if create && exists {
        return Err(bad_request(
            json!({ "message": "A file with this name already exists" }),
        ));
    }
    if !create && !exists {
        return Err(bad_request(
            json!({ "message": "A file with this name doesn't exist" }),
        ));
    }
    project.files.insert(key, content);
    project.commits += 1;
    if project.default_branch.is_none() {
        project.default_branch = Some(branch.clone());
    }
    Ok(Response::json(
        if create { 201 } else { 200 },
        json!({ "file_path": path, "branch": branch }),
    ))
}

/// GitLab's `DELETE .../repository/files/:path`: 204 with a commit; 400 when the file is absent.
fn delete_file(project: &mut ProjectState, path: &str, body: &Value) -> Served {
    let field = |name: &str| {
        body[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| bad_request(json!({ "error": format!("{name} is missing") })))
    };
    let branch = field("branch")?;
    field("commit_message")?;
    if !branch_exists(project, &branch) {
        return Err(bad_request(json!({
            "message": "You can only create or edit files when you are on a branch"
        })));
    }
    if project.files.remove(&(branch, path.to_owned())).is_none() {
        return Err(bad_request(
            json!({ "message": "A file with this name doesn't exist" }),
        ));
    }
    project.commits += 1;
    Ok(Response::empty(204))
}

/// Standard base64 with padding, as GitLab encodes file content.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let word = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for position in 0..4 {
            if position <= chunk.len() {
                out.push(ALPHABET[((word >> (18 - 6 * position)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
