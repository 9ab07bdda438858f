//! The simulated helm controller reading the HelmCharts edgeops writes (lab + GitLab double):
//! `plan` names each chart, version and repository; a chart version missing from the lab
//! mirror's chart index makes k3s's install job crash-loop, and `up` fails with helm's message
//! from the job pod's log after the attempts limit; runner values the gitlab-runner chart's
//! runner refuses with a `glrt-` token (`runners.tags`) install fine but the runner pod cannot
//! register, and `up` fails with the runner's FATAL line from its log; `status` (table and JSON)
//! shows it; the default templates then deploy and the runner pod is ready. Needs root and
//! `scripts/lab`.

mod gitlab_double;
mod support;

use support::Edgeops;

use std::path::{Path, PathBuf};
use std::process::Output;

use gitlab_double::{GitLabDouble, Role};

const API_TOKEN: &str = "glpat-HELMLAB-0123456789abcdefXYZ";
const TOKEN_ENV: &str = "EDGEOPS_TEST_GITLAB_TOKEN";
const PROJECT: &str = "edge/fleet";
const CLUSTER: &str = "helm";
const RUNNER_REFUSAL: &str =
    "FATAL: Runner configuration other than name and executor configuration is reserved";
const MISSING_VERSION: &str =
    r#"chart "gitlab-runner" version "9.9.9" not found in https://charts.gitlab.io repository"#;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One server, the lab mirror, `[gitlab]` with a runner and `templates` as `templates_dir`.
fn inventory(lab: &support::Lab, dir: &Path, gitlab_url: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("templates/gitlab")).unwrap();
    lab.inventory(CLUSTER)
        .hosts(&[&lab.hosts()[0].name])
        .cluster("disable = [\"traefik\"]")
        .tables(&format!(
            "[gitlab]\nurl = \"{gitlab_url}\"\nproject = \"{PROJECT}\"\ntoken_env = \"{TOKEN_ENV}\"\n\
             templates_dir = \"templates\"\n\n\
             [gitlab.runner]\ntype = \"project\"\ntags = [\"k3s\", \"lab\"]\n"
        ))
        .write(dir)
}

fn builtin(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("templates/gitlab")
            .join(name),
    )
    .unwrap()
}

/// Put (or, with `None`, remove) an override of a built-in GitLab template.
fn set_override(dir: &Path, name: &str, content: Option<String>) {
    let path = dir.join("templates/gitlab").join(name);
    match content {
        Some(content) => std::fs::write(path, content).unwrap(),
        None => {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn chart_line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with("chart") && l.contains(name))
        .unwrap_or_else(|| panic!("no chart row for {name}:\n{out}"))
}

fn runner_chart(lab: &support::Lab, server: &str) -> serde_json::Value {
    serde_json::from_str(&lab.ssh_ok(
        server,
        "sudo k3s kubectl get helmchart gitlab-runner -n kube-system -o json",
    ))
    .expect("helmchart JSON")
}

fn failed_condition(chart: &serde_json::Value) -> serde_json::Value {
    chart["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap_or_else(|| panic!("no Failed condition in {chart}"))
}

#[test]
fn helm_controller_refuses_a_missing_version_and_reserved_runner_values_then_deploys_the_default() {
    let lab = support::Lab::options(1).start();
    let server = lab.hosts()[0].name.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let double = runtime.block_on(GitLabDouble::start());
    double.add_token(API_TOKEN, &["api"], Role::Maintainer);
    double.add_project(PROJECT, Some("main"));
    let dir = tempfile::tempdir().unwrap();
    let inv_path = inventory(&lab, dir.path(), &double.url());
    let inv = inv_path.to_str().unwrap();
    let edgeops = Edgeops::new().with_env(TOKEN_ENV, API_TOKEN);

    // A pinned version the repository does not have.
    let pinned = builtin("helmchart-runner.yaml.j2").replace(
        "  chart: {{ chart | tojson }}\n",
        "  chart: {{ chart | tojson }}\n  version: \"9.9.9\"\n",
    );
    assert!(pinned.contains("9.9.9"), "template layout changed");
    set_override(dir.path(), "helmchart-runner.yaml.j2", Some(pinned));

    // plan names what each chart would install.
    let plan = edgeops.run(&["plan", inv]);
    let plan_out = text(&plan);
    assert!(plan.status.success(), "plan failed:\n{plan_out}");
    assert!(
        chart_line(&plan_out, "gitlab-runner")
            .contains("gitlab-runner 9.9.9 from https://charts.gitlab.io"),
        "{plan_out}"
    );
    assert!(
        chart_line(&plan_out, "gitlab-agent-helm")
            .contains("gitlab-agent (newest) from https://charts.gitlab.io"),
        "{plan_out}"
    );

    let missing = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out = text(&missing);
    assert_eq!(missing.status.code(), Some(1), "{out}");
    assert!(out.contains(MISSING_VERSION), "{out}");
    assert!(
        chart_line(&out, "gitlab-agent-helm").contains("deployed"),
        "{out}"
    );
    // As k3s shows it: the HelmChart never carries the job's outcome (Failed stays False), the
    // install job's pod crash-loops (restartPolicy OnFailure) and helm's error is only in its log.
    let chart = runner_chart(&lab, &server);
    assert_eq!(failed_condition(&chart)["status"], "False", "{chart}");
    let pods: serde_json::Value = serde_json::from_str(&lab.ssh_ok(
        &server,
        "sudo k3s kubectl get pods -n kube-system -l job-name=helm-install-gitlab-runner -o json",
    ))
    .unwrap();
    let container = &pods["items"][0]["status"]["containerStatuses"][0];
    assert!(
        container["restartCount"].as_u64().unwrap() >= 2,
        "edgeops gave up before three failed runs: {pods}"
    );
    let logs = lab.ssh_ok(
        &server,
        "sudo k3s kubectl logs -n kube-system job/helm-install-gitlab-runner",
    );
    assert!(logs.contains(MISSING_VERSION), "{logs}");

    // Runner settings that moved to the API, put back into the chart values.
    set_override(dir.path(), "helmchart-runner.yaml.j2", None);
    let tagged = builtin("runner-values.yaml.j2").replace(
        "\nrunners:\n",
        "\nrunners:\n  tags: \"k3s,lab\"\n  runUntagged: false\n",
    );
    assert!(tagged.contains("runUntagged"), "template layout changed");
    set_override(dir.path(), "runner-values.yaml.j2", Some(tagged));
    let refused = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    assert!(
        chart_line(&out, "gitlab-runner").contains(RUNNER_REFUSAL),
        "{out}"
    );
    assert!(out.contains("set them in [gitlab.runner]"), "{out}");
    // The install itself succeeded; the runner's pod cannot register and says why in its log.
    let chart = runner_chart(&lab, &server);
    assert_eq!(failed_condition(&chart)["status"], "False", "{chart}");
    let job = lab.ssh_ok(
        &server,
        "sudo k3s kubectl get job helm-install-gitlab-runner -n kube-system -o json",
    );
    let job: serde_json::Value = serde_json::from_str(&job).unwrap();
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    let runner_ns = chart["spec"]["targetNamespace"]
        .as_str()
        .unwrap()
        .to_owned();
    let logs = lab.ssh_ok(
        &server,
        &format!("sudo k3s kubectl logs -n {runner_ns} deployment/gitlab-runner"),
    );
    assert!(logs.contains(RUNNER_REFUSAL), "{logs}");
    assert!(logs.contains("Registration attempt 1 of 30"), "{logs}");

    // status shows the failure and its reason, in the table and in JSON.
    let status = edgeops.run(&["status", inv]);
    let status_out = text(&status);
    let line = chart_line(&status_out, "gitlab-runner");
    assert!(line.contains("failed"), "{status_out}");
    assert!(line.contains(RUNNER_REFUSAL), "{status_out}");
    let json = edgeops.run(&["status", inv, "--output", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status JSON");
    let row = report["gitlab"]["rows"]
        .as_array()
        .expect("gitlab rows")
        .iter()
        .find(|r| r["name"] == "gitlab-runner")
        .cloned()
        .unwrap_or_else(|| panic!("no gitlab-runner row in {report}"));
    assert_eq!(row["result"], "failed", "{report}");
    assert!(
        row["detail"].as_str().unwrap().contains(RUNNER_REFUSAL),
        "{report}"
    );
    // No token in what edgeops printed.
    let runner_secret = double.state().runners[0].secret.clone();
    for printed in [
        &out,
        &status_out,
        &String::from_utf8_lossy(&json.stdout).into_owned(),
    ] {
        assert!(
            !printed.contains(&runner_secret),
            "token printed:\n{printed}"
        );
    }

    // The built-in templates deploy.
    set_override(dir.path(), "runner-values.yaml.j2", None);
    let fixed = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out = text(&fixed);
    assert!(fixed.status.success(), "{out}");
    assert!(
        chart_line(&out, "gitlab-runner").contains("deployed"),
        "{out}"
    );
    assert!(
        chart_line(&out, "gitlab-runner")
            .contains("gitlab-runner (newest) from https://charts.gitlab.io"),
        "{out}"
    );
    let status = edgeops.run(&["status", inv]);
    let status_out = text(&status);
    assert!(
        chart_line(&status_out, "gitlab-runner")
            .contains("gitlab-runner (newest) from https://charts.gitlab.io"),
        "{status_out}"
    );
    assert_eq!(
        failed_condition(&runner_chart(&lab, &server))["status"],
        "False"
    );
    // The runner's pod is ready: the release really runs.
    let ready = lab.ssh_ok(
        &server,
        &format!(
            "sudo k3s kubectl get pods -n {runner_ns} -l release=gitlab-runner \
             -o jsonpath='{{.items[0].status.conditions[?(@.type==\"Ready\")].status}}'"
        ),
    );
    assert_eq!(ready.trim(), "True", "runner pod not ready: {ready}");
}
