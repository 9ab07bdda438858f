//! `edgeops up` with a `[gitlab]` section against the lab (real hosts, the k3s simulator) and the
//! GitLab test double served over real HTTP on 127.0.0.1: registration, the HelmChart manifests
//! written into the first server's auto-deploy folder and reported deployed, a re-run that
//! creates nothing in GitLab and writes nothing on the host, `--rotate-tokens`, `status`, and no
//! token in output, run logs or `ps` on the host. Needs root and `scripts/lab`.

mod gitlab_double;
mod support;

use support::Edgeops;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gitlab_double::{Fault, GitLabDouble, Role};

const API_TOKEN: &str = "glpat-LABTEST-0123456789abcdefXYZ";
const TOKEN_ENV: &str = "EDGEOPS_TEST_GITLAB_TOKEN";
const PROJECT: &str = "edge/fleet";
const CLUSTER: &str = "glab";
const MANIFESTS: &str = "/var/lib/rancher/k3s/server/manifests";
const AGENT_MANIFEST: &str = "/var/lib/rancher/k3s/server/manifests/gitlab-agent-glab.yaml";
const RUNNER_MANIFEST: &str = "/var/lib/rancher/k3s/server/manifests/gitlab-runner.yaml";
const TOKENS_FILE: &str = "/etc/rancher/k3s/edgeops-gitlab-tokens";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lab's first host the server, the second an agent, `[gitlab]` with a project runner.
fn inventory(lab: &support::Lab, dir: &Path, gitlab_url: &str) -> PathBuf {
    let hosts = lab.hosts();
    lab.inventory(CLUSTER)
        .hosts(&[&hosts[0].name, &hosts[1].name])
        .cluster("disable = [\"traefik\"]")
        .tables(&format!(
            "[gitlab]\nurl = \"{gitlab_url}\"\nproject = \"{PROJECT}\"\ntoken_env = \"{TOKEN_ENV}\"\n\n\
             [gitlab.runner]\ntype = \"project\"\ntags = [\"k3s\", \"lab\"]\n"
        ))
        .file_name("gitlab.toml")
        .write(dir)
}

/// `METHOD path` of every request that changes something in GitLab.
fn mutations(double: &GitLabDouble) -> Vec<String> {
    double
        .log()
        .into_iter()
        .filter(|logged| logged.method != "GET")
        .map(|logged| format!("{} {}", logged.method, logged.path))
        .collect()
}

/// Inode, mtime, mode and owner of the files the GitLab phase writes.
fn footprint(lab: &support::Lab, server: &str) -> String {
    lab.ssh_ok(
        server,
        &format!(
            "sudo stat -c '%n %i %Y.%y %a %U:%G' {AGENT_MANIFEST} {RUNNER_MANIFEST} {TOKENS_FILE}"
        ),
    )
}

/// The HelmCharts as the simulated cluster lists them, by name.
fn charts(lab: &support::Lab, server: &str) -> serde_json::Value {
    serde_json::from_str(&lab.ssh_ok(server, "sudo k3s kubectl get helmcharts -A -o json"))
        .expect("helmcharts JSON")
}

fn chart<'a>(charts: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    charts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no HelmChart {name} in {charts}"))
}

fn condition<'a>(chart: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    chart["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {chart}"))
}

/// The tokens GitLab handed out so far (the double's record of every secret).
fn issued_secrets(double: &GitLabDouble) -> Vec<String> {
    let state = double.state();
    state
        .agent_tokens
        .iter()
        .map(|t| t.secret.clone())
        .chain(state.runners.iter().map(|r| r.secret.clone()))
        .chain([API_TOKEN.to_owned()])
        .collect()
}

#[test]
fn up_registers_deploys_both_charts_then_reruns_without_writes() {
    let lab = support::Lab::options(2).start();
    let server = lab.hosts()[0].name.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let double = runtime.block_on(GitLabDouble::start());
    double.add_token(API_TOKEN, &["api"], Role::Maintainer);
    let project_id = double.add_project(PROJECT, Some("main"));
    let dir = tempfile::tempdir().unwrap();
    let inv_path = inventory(&lab, dir.path(), &double.url());
    let inv = inv_path.to_str().unwrap();
    let edgeops = Edgeops::new().with_env(TOKEN_ENV, API_TOKEN);

    // Watch the server's process list for the whole test: no token may appear on a command line.
    let sampler = lab.ssh_ok(
        &server,
        "sudo sh -c 'nohup sh -c \"while :; do ps -eo args >>/tmp/ps-sample.log; sleep 0.05; done\" \
         >/dev/null 2>&1 & echo $!'",
    );

    // Plan on bare hosts: says what would happen, calls no GitLab mutation.
    let plan = edgeops.run(&["plan", inv]);
    let plan_out = text(&plan);
    assert!(plan.status.success(), "plan failed:\n{plan_out}");
    assert!(plan_out.contains("would find or register"), "{plan_out}");
    assert!(plan_out.contains("would create"), "{plan_out}");
    assert_eq!(mutations(&double), Vec::<String>::new());

    // First up: cluster, registration, manifests, both charts deployed.
    let first = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out1 = text(&first);
    assert!(first.status.success(), "up failed:\n{out1}");
    {
        let state = double.state();
        assert_eq!(state.agents.len(), 1, "{out1}");
        assert_eq!(state.agents[0].name, CLUSTER);
        assert_eq!(state.agent_tokens.iter().filter(|t| t.active).count(), 1);
        assert_eq!(state.runners.len(), 1);
        assert_eq!(state.runners[0].description, format!("edgeops:{CLUSTER}"));
        assert_eq!(state.runners[0].tags, vec!["k3s", "lab"]);
        assert_eq!(state.runners[0].owner_id, Some(project_id));
        let project = &state.projects[0];
        assert!(
            project.files.contains_key(&(
                "main".to_owned(),
                format!(".gitlab/agents/{CLUSTER}/config.yaml")
            )),
            "agent config not committed"
        );
        assert_eq!(project.commits, 1);
    }
    let listed = charts(&lab, &server);
    for (name, namespace) in [
        ("gitlab-agent-glab", "gitlab-agent-glab"),
        ("gitlab-runner", "gitlab-runner"),
    ] {
        let chart = chart(&listed, name);
        assert_eq!(chart["metadata"]["namespace"], "kube-system");
        assert_eq!(chart["spec"]["targetNamespace"], namespace);
        assert_eq!(condition(chart, "JobCreated")["status"], "True", "{chart}");
        assert_eq!(condition(chart, "Failed")["status"], "False", "{chart}");
        lab.ssh_ok(
            &server,
            &format!("sudo k3s kubectl get namespace {namespace}"),
        );
        let up_line = out1
            .lines()
            .find(|l| l.starts_with("chart") && l.contains(name))
            .unwrap_or_else(|| panic!("no chart row for {name}:\n{out1}"));
        assert!(up_line.contains("deployed"), "{up_line}");
    }
    // The tokens GitLab issued are inside the deployed values and the kept tokens file.
    let runner_secret = double.state().runners[0].secret.clone();
    let agent_secret = double.state().agent_tokens[0].secret.clone();
    let runner_values = chart(&listed, "gitlab-runner")["spec"]["valuesContent"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        runner_values.contains(&runner_secret),
        "runner token not deployed"
    );
    assert!(
        chart(&listed, "gitlab-agent-glab")["spec"]["valuesContent"]
            .as_str()
            .unwrap()
            .contains(&agent_secret),
        "agent token not deployed"
    );
    let before = footprint(&lab, &server);
    for line in before.lines() {
        assert!(line.ends_with(" 600 root:root"), "not private: {line}");
    }

    // Re-run: nothing created in GitLab, nothing written on the host.
    double.clear_log();
    let runs_before = edgeops.run_dirs();
    let second = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out2 = text(&second);
    assert!(second.status.success(), "re-run failed:\n{out2}");
    // The re-run's round trips on the first server, from its log: the lock rides in the facts
    // exec and its release in the (only) chart poll, after the phase's last possible write.
    let rerun: Vec<PathBuf> = edgeops
        .run_dirs()
        .into_iter()
        .filter(|d| !runs_before.contains(d))
        .collect();
    assert_eq!(rerun.len(), 1, "{rerun:?}");
    let log = std::fs::read_to_string(rerun[0].join(format!("{server}.log"))).unwrap();
    let commands: Vec<&str> = log
        .lines()
        .filter_map(|line| line.strip_prefix("==== "))
        .filter_map(|line| line.split_once(' ').map(|(_, title)| title))
        .filter(|title| *title == "facts" || title.ends_with(": command"))
        .collect();
    assert_eq!(
        commands,
        [
            "facts",
            "wait for the API: command",
            "gitlab: look: command",
            "gitlab: charts: command"
        ],
        "re-run commands on the first server"
    );
    lab.ssh_ok(&server, "test ! -e /run/edgeops-up.lock");
    assert_eq!(mutations(&double), Vec::<String>::new(), "{out2}");
    assert!(
        !double.log().is_empty(),
        "the re-run must still check GitLab"
    );
    assert_eq!(
        footprint(&lab, &server),
        before,
        "a re-run wrote on the host"
    );
    assert!(out2.contains("gitlab: nothing to do"), "{out2}");
    assert_eq!(double.state().runners.len(), 1);
    assert_eq!(double.state().agents.len(), 1);

    // Plan on the converged cluster: the stored tokens render the same manifests.
    let plan2 = edgeops.run(&["plan", inv]);
    let plan2_out = text(&plan2);
    assert!(plan2.status.success(), "{plan2_out}");
    assert!(
        plan2_out.contains("would reuse the stored token"),
        "{plan2_out}"
    );
    assert!(!plan2_out.contains("would write"), "{plan2_out}");

    // Status shows both charts deployed.
    let status = edgeops.run(&["status", inv]);
    let status_out = text(&status);
    assert!(status.status.success(), "{status_out}");
    for name in ["gitlab-agent-glab", "gitlab-runner"] {
        let line = status_out
            .lines()
            .find(|l| l.starts_with("chart") && l.contains(name))
            .unwrap_or_else(|| panic!("no chart row for {name}:\n{status_out}"));
        assert!(line.contains("deployed"), "{line}");
    }

    let json = edgeops.run(&["status", inv, "--output", "json"]);
    assert!(json.status.success(), "{}", text(&json));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status JSON");
    let rows = report["gitlab"]["rows"].as_array().expect("gitlab rows");
    assert_eq!(rows.len(), 2, "{report}");
    assert!(rows.iter().all(|r| r["result"] == "deployed"), "{report}");

    // Rotation: new tokens, same agent and runner, old agent token revoked, manifests rewritten.
    double.clear_log();
    let rotated = edgeops.run(&["up", inv, "--rotate-tokens", "--ready-timeout", "90s"]);
    let out3 = text(&rotated);
    assert!(rotated.status.success(), "rotation failed:\n{out3}");
    {
        let state = double.state();
        assert_eq!(state.agents.len(), 1);
        assert_eq!(state.runners.len(), 1);
        assert_ne!(
            state.runners[0].secret, runner_secret,
            "runner token not reset"
        );
        let active: Vec<_> = state.agent_tokens.iter().filter(|t| t.active).collect();
        assert_eq!(active.len(), 1);
        assert_ne!(active[0].secret, agent_secret, "agent token not rotated");
    }
    assert_ne!(
        footprint(&lab, &server),
        before,
        "rotated tokens were not written"
    );
    let new_runner_secret = double.state().runners[0].secret.clone();
    let listed = charts(&lab, &server);
    assert!(
        chart(&listed, "gitlab-runner")["spec"]["valuesContent"]
            .as_str()
            .unwrap()
            .contains(&new_runner_secret),
        "the rotated runner token is not what the cluster deployed"
    );

    // GitLab refusing fails the run (exit 1) with GitLab's answer, hosts untouched and fine.
    let settled = footprint(&lab, &server);
    double.fail_next(
        "GET",
        "/cluster_agents",
        1,
        Fault::Status {
            status: 403,
            body: serde_json::json!({ "message": "403 Forbidden" }),
        },
    );
    let refused = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out4 = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out4}");
    assert!(out4.contains("the GitLab phase failed"), "{out4}");
    assert!(out4.contains("403 Forbidden"), "{out4}");
    assert!(out4.contains("0 failed"), "hosts must stay fine:\n{out4}");
    assert_eq!(
        footprint(&lab, &server),
        settled,
        "a refused run wrote on the host"
    );

    // No token anywhere it could leak: output, run logs, the server's process list.
    lab.ssh_ok(&server, &format!("sudo kill {sampler}"));
    let ps = lab.ssh_ok(&server, "sudo cat /tmp/ps-sample.log");
    assert!(ps.lines().count() > 10, "the ps sampler did not run");
    let logs = edgeops.logs();
    assert!(
        logs.contains("gitlab: look"),
        "run logs are missing:\n{logs}"
    );
    assert!(
        logs.contains("chart gitlab-runner: deployed"),
        "the GitLab outcome is not in the run log:\n{logs}"
    );
    // The double keeps a runner's current token only: add the one rotation replaced.
    let mut secrets = issued_secrets(&double);
    secrets.push(runner_secret);
    assert_eq!(
        secrets.len(),
        5,
        "two agent tokens, two runner tokens, the API token"
    );
    for (what, haystack) in [
        (
            "output",
            format!("{plan_out}{out1}{out2}{plan2_out}{status_out}{out3}"),
        ),
        ("run logs", logs),
        ("ps on the server", ps),
    ] {
        for secret in &secrets {
            assert!(
                !haystack.contains(secret.as_str()),
                "a GitLab token appeared in the {what}"
            );
        }
    }
    // The manifests folder holds only our charts' files and nothing half-written.
    let listing = lab.ssh_ok(&server, &format!("sudo ls -A {MANIFESTS}"));
    assert!(!listing.contains(".edgeops-upload"), "{listing}");
    drop(double);
}

#[test]
fn up_without_the_gitlab_token_is_bad_input_and_touches_no_host() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("no-token.toml");
    // TEST-NET-1 (RFC 5737): nothing answers there; a run that tried to connect would end in
    // exit 1 (unreachable), not 2.
    std::fs::write(
        &inventory,
        format!(
            "[cluster]\nname = \"notoken\"\n\n[ssh]\nuser = \"pi\"\nagent = true\n\n\
             [[hosts]]\nname = \"s1\"\naddress = \"192.0.2.1\"\nrole = \"server\"\n\n\
             [gitlab]\nurl = \"https://gitlab.example.com\"\nproject = \"{PROJECT}\"\n\
             token_env = \"{TOKEN_ENV}\"\n"
        ),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgeops"))
        .args(["up", inventory.to_str().unwrap()])
        .env("HOME", home.path())
        .env_remove(TOKEN_ENV)
        .output()
        .expect("run edgeops");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr.contains(TOKEN_ENV), "{stderr}");
    assert!(stderr.contains("GitLab API token"), "{stderr}");
}

/// Whether the host holds k3s or edgeops' GitLab files (empty when clean).
fn traces(lab: &support::Lab, host: &str) -> String {
    lab.ssh_ok(
        host,
        &format!(
            "sudo sh -c 'for p in /usr/local/bin/k3s /etc/rancher /var/lib/rancher {TOKENS_FILE} \
             {AGENT_MANIFEST} {RUNNER_MANIFEST}; do [ -e \"$p\" ] && echo \"file $p\"; done; \
             for p in $(pgrep -f \"[k]3s (server|agent)\"); do echo \"process $p\"; done; true'"
        ),
    )
}

#[test]
fn reset_gitlab_removes_the_cluster_from_gitlab_then_says_already_gone() {
    let lab = support::Lab::options(2).start();
    let hosts: Vec<String> = lab.hosts().iter().map(|h| h.name.clone()).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let double = runtime.block_on(GitLabDouble::start());
    double.add_token(API_TOKEN, &["api"], Role::Maintainer);
    let project_id = double.add_project(PROJECT, Some("main"));
    let dir = tempfile::tempdir().unwrap();
    let inv_path = inventory(&lab, dir.path(), &double.url());
    let inv = inv_path.to_str().unwrap();
    let edgeops = Edgeops::new().with_env(TOKEN_ENV, API_TOKEN);
    let config_key = (
        "main".to_owned(),
        format!(".gitlab/agents/{CLUSTER}/config.yaml"),
    );

    // Refused before anything is touched: --gitlab with --limit (a cluster that stays).
    let limited = edgeops.run(&["reset", inv, "--gitlab", "--yes", "--limit", &hosts[1]]);
    let limited_out = text(&limited);
    assert_eq!(limited.status.code(), Some(2), "{limited_out}");
    assert!(
        limited_out.contains("--gitlab needs a whole-cluster reset"),
        "{limited_out}"
    );
    assert!(double.log().is_empty(), "GitLab was called: {limited_out}");

    let up = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let up_out = text(&up);
    assert!(up.status.success(), "up failed:\n{up_out}");
    {
        let state = double.state();
        assert_eq!(state.agents.len(), 1);
        assert_eq!(state.runners.len(), 1);
        assert_eq!(state.agent_tokens.iter().filter(|t| t.active).count(), 1);
        assert!(state.projects[0].files.contains_key(&config_key));
    }
    let secrets = issued_secrets(&double);
    let commits = double.commits();

    // Refused again once the cluster is up; it still stands, GitLab untouched.
    double.clear_log();
    let limited = edgeops.run(&["reset", inv, "--gitlab", "--yes", "--limit", &hosts[1]]);
    assert_eq!(limited.status.code(), Some(2), "{}", text(&limited));
    assert!(!traces(&lab, &hosts[1]).is_empty(), "the agent was reset");
    assert!(double.log().is_empty());

    // The plan names what leaves GitLab; the reset removes it all, hosts clean.
    let reset = edgeops.run(&["reset", inv, "--yes", "--gitlab"]);
    let out = text(&reset);
    assert!(reset.status.success(), "reset --gitlab failed:\n{out}");
    assert!(
        out.contains("gitlab: once the first server is reset, will remove from"),
        "{out}"
    );
    assert!(out.contains(&format!("runner edgeops:{CLUSTER}")), "{out}");
    {
        let state = double.state();
        assert!(state.agents.is_empty(), "{out}");
        assert!(state.runners.is_empty(), "{out}");
        assert!(
            state.agent_tokens.iter().all(|t| !t.active),
            "an agent token is still active"
        );
        let project = state.projects.iter().find(|p| p.id == project_id).unwrap();
        assert!(!project.files.contains_key(&config_key), "config file kept");
    }
    assert_eq!(
        double.commits(),
        commits + 1,
        "one commit deletes the config"
    );
    for row in ["runner", "agent token", "agent ", "agent config"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no {row} row:\n{out}"));
        assert!(line.contains("deleted"), "{line}");
    }
    assert!(
        out.contains("gitlab: 4 deleted, 0 already gone, 0 failed"),
        "{out}"
    );
    for host in &hosts {
        let left = traces(&lab, host);
        assert!(left.is_empty(), "{host} after reset:\n{left}");
    }

    // Again, as JSON: hosts already clean, GitLab already gone, nothing changed in GitLab.
    double.clear_log();
    let again = edgeops.run(&["reset", inv, "--yes", "--gitlab", "--output", "json"]);
    assert!(again.status.success(), "{}", text(&again));
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).expect("reset JSON");
    let rows = report["gitlab"]["rows"].as_array().expect("gitlab rows");
    assert!(!rows.is_empty(), "{report}");
    assert!(
        rows.iter().all(|r| r["result"] == "already gone"),
        "{report}"
    );
    assert_eq!(report["gitlab"]["status"], "unchanged", "{report}");
    for host in report["hosts"].as_array().unwrap() {
        assert_eq!(host["result"], "already clean", "{host}");
    }
    assert_eq!(mutations(&double), Vec::<String>::new());

    // A GitLab failure: exit 1, host rows still reported.
    double.fail_next(
        "GET",
        "/cluster_agents",
        1,
        Fault::Status {
            status: 403,
            body: serde_json::json!({ "message": "403 Forbidden" }),
        },
    );
    let refused = edgeops.run(&["reset", inv, "--yes", "--gitlab"]);
    let refused_out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{refused_out}");
    assert!(refused_out.contains("403 Forbidden"), "{refused_out}");
    assert!(refused_out.contains("already clean"), "{refused_out}");
    assert!(
        refused_out.contains("GitLab was not cleaned up"),
        "{refused_out}"
    );

    // No token in output or run logs.
    let logs = edgeops.logs();
    for secret in &secrets {
        for (what, haystack) in [
            ("output", format!("{up_out}{out}{refused_out}")),
            ("logs", logs.clone()),
        ] {
            assert!(
                !haystack.contains(secret.as_str()),
                "a token appeared in the {what}"
            );
        }
    }
    drop(double);
}

#[test]
fn reset_gitlab_without_a_gitlab_section_is_bad_input_and_touches_no_host() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("no-gitlab.toml");
    // TEST-NET-1 (RFC 5737): a run that tried to connect would end in exit 1, not 2.
    std::fs::write(
        &inventory,
        "[cluster]\nname = \"nogitlab\"\n\n[ssh]\nuser = \"pi\"\nagent = true\n\n\
         [[hosts]]\nname = \"s1\"\naddress = \"192.0.2.1\"\nrole = \"server\"\n",
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgeops"))
        .args(["reset", inventory.to_str().unwrap(), "--yes", "--gitlab"])
        .env("HOME", home.path())
        .output()
        .expect("run edgeops");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr.contains("no [gitlab] section"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
}
