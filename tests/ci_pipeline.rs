//! `edgeops ci`: the pipeline it writes is checked with real tools, not by reading it.
//!
//! - `check-jsonschema --builtin-schema vendor.gitlab-ci` (PyPI, GitLab's own CI schema as
//!   vendored by check-jsonschema) validates the generated file, and refuses a broken copy of it
//!   (so the validation can fail).
//! - `gitlab-ci-local` (npm, runs a `.gitlab-ci.yml` on this machine, shell executor) runs the
//!   pipeline of a temporary git repository holding two site inventories against two lab
//!   clusters (1 server + 2 agents each, one lab of 6 hosts): a merge request changing site-a
//!   runs `check` and only `plan:site-a` (rules:changes), whose plan is in the log and in the
//!   artifact; the merged default branch runs `check` and both `up` jobs; both clusters end
//!   Ready (read on each first server); a second pipeline says nothing to do; with `--manual`
//!   the `up` jobs wait and one started by hand runs alone. No secret (join
//!   token, SSH key) shows up in any output, artifact or the file. Site-a's host keys come from
//!   the repository, site-b's from the EDGEOPS_KNOWN_HOSTS file variable.
//!
//! What gitlab-ci-local covers, read in its source (dist/index.js of the pinned 4.73.0) and seen
//! in these runs:
//! - `parallel:matrix`: expanded like GitLab, one job per matrix entry, named
//!   `up: [v1,v2,...]`, the entry's variables set in the job (used here for the runner tag,
//!   environment name and inventory path).
//! - `rules`: `if` expressions (variables compared with `==`, `&&`), `when: manual` (such jobs
//!   need `--manual JOB`), and `changes`, evaluated as `git diff --name-only
//!   origin/<default branch>` against the working tree, the default branch taken from
//!   `refs/remotes/origin/HEAD`; `workflow:rules` too. The pipeline source is `push` unless
//!   overridden (`--variable CI_PIPELINE_SOURCE=merge_request_event` for the merge request).
//! - `environment`: the name is expanded with the job's variables and printed per job.
//! - `tags`: ignored in shell mode (every job runs here).
//! - `resource_group`: NOT implemented (only in its schema): jobs are not serialised per
//!   cluster; this test checks the key is in the file and valid for GitLab's schema, not that a
//!   second pipeline waits.
//! - File-type variables: a value starting with `/` in the variables file is a file variable
//!   (its content copied to a temporary file whose path is the value), or `type: file`.
//!
//! Needs `check-jsonschema` and `gitlab-ci-local` on PATH (scripts/test.sh installs them; by
//! hand: `/opt/edgeops-test-tools/bin` is searched too) and, for the lab test, root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;

const PINNED: &str = "v1.31.4+k3s1";
/// The join token of site-a, given to the pipeline as a file-type CI/CD variable.
const SITE_A_TOKEN: &str = "site-a-join-secret-7d41c9e2b8";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A test tool from PATH, else from the folder scripts/test.sh installs the Python tools into.
fn tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/opt/edgeops-test-tools/bin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!("`{name}` is not installed: scripts/test.sh installs it (see its tool section)")
    })
}

fn edgeops() -> &'static str {
    env!("CARGO_BIN_EXE_edgeops")
}

/// The inventory of one site: its server and two agents at `addresses`, the lab's k3s mirror,
/// keys from ssh-agent (the pipeline loads EDGEOPS_SSH_KEY into one) and the repository's
/// known_hosts.
fn site_inventory(
    name: &str,
    prefix: &str,
    addresses: &[String],
    mirror: &str,
    extra: &str,
) -> String {
    format!(
        r#"[cluster]
name = "{name}"
version = "{PINNED}"
install_url = "{mirror}/install.sh"
channel_url = "{mirror}/v1-release/channels"
download_url = "{mirror}/k3s-io/k3s/releases"
{extra}
[ssh]
user = "pi"
agent = true
known_hosts = "../known_hosts"
sudo = "passwordless"

[[hosts]]
name = "{prefix}-01"
address = "{}"
role = "server"

[[hosts]]
name = "{prefix}-02"
address = "{}"
role = "agent"

[[hosts]]
name = "{prefix}-03"
address = "{}"
role = "agent"
"#,
        addresses[0], addresses[1], addresses[2]
    )
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let all = text(&out);
    assert!(out.status.success(), "{what} failed:\n{all}");
    all
}

fn git(repo: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new("git")
            .args(args)
            .current_dir(repo)
            .env("GIT_AUTHOR_NAME", "edgeops test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "edgeops test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com"),
        &format!("git {args:?}"),
    )
}

fn write_pipeline(repo: &Path, extra: &[&str]) -> String {
    let mut args = vec!["ci", "sites"];
    args.extend_from_slice(extra);
    run_ok(
        Command::new(edgeops()).args(&args).current_dir(repo),
        "edgeops ci",
    );
    std::fs::read_to_string(repo.join(".gitlab-ci.yml")).unwrap()
}

fn validate(file: &Path) -> Output {
    Command::new(tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.gitlab-ci"])
        .arg(file)
        .output()
        .expect("run check-jsonschema")
}

#[test]
fn the_generated_pipeline_validates_against_gitlabs_ci_schema() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    std::fs::create_dir_all(repo.join("sites")).unwrap();
    std::fs::write(repo.join("known_hosts"), "").unwrap();
    let addrs =
        |base: u8| -> Vec<String> { (0..3).map(|i| format!("10.9.0.{}", base + i)).collect() };
    let mirror = "http://10.9.0.1:8080";
    std::fs::write(
        repo.join("sites/berlin.toml"),
        site_inventory(
            "berlin",
            "ber",
            &addrs(11),
            mirror,
            "token_env = \"BERLIN_TOKEN\"\n\n[ci]\nrunner_tag = \"site-berlin\"\n",
        ),
    )
    .unwrap();
    std::fs::write(
        repo.join("sites/on.toml"),
        site_inventory("on", "on", &addrs(21), mirror, ""),
    )
    .unwrap();

    for extra in [&[][..], &["--manual"][..]] {
        let text = write_pipeline(repo, extra);
        let out = validate(&repo.join(".gitlab-ci.yml"));
        assert!(
            out.status.success(),
            "GitLab's schema refuses the pipeline (edgeops ci {extra:?}):\n{}\n{text}",
            self::text(&out)
        );
        assert!(text.contains("resource_group: edgeops/$EDGEOPS_CLUSTER"));
        assert!(text.contains("BERLIN_TOKEN"), "the variable is named");
    }

    // The validator does refuse what GitLab would: a matrix that is not a list of tables.
    let good = std::fs::read_to_string(repo.join(".gitlab-ci.yml")).unwrap();
    let broken = good.replacen("    matrix:\n", "    matrix: \"berlin\"\n    unused:\n", 1);
    assert_ne!(broken, good);
    std::fs::write(repo.join("broken.yml"), broken).unwrap();
    let out = validate(&repo.join("broken.yml"));
    assert!(
        !out.status.success(),
        "check-jsonschema accepted a broken pipeline:\n{}",
        text(&out)
    );

    // Two inventories of one cluster name would share jobs, environment and lock: refused.
    std::fs::write(
        repo.join("sites/berlin-copy.toml"),
        site_inventory("berlin", "bc", &addrs(31), mirror, ""),
    )
    .unwrap();
    let out = Command::new(edgeops())
        .args(["ci", "sites", "--out", "-"])
        .current_dir(repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "cluster `berlin` is named by both sites/berlin-copy.toml and sites/berlin.toml"
        ),
        "{}",
        text(&out)
    );
}

/// `gitlab-ci-local ARGS` in `repo`, the edgeops under test first on PATH.
fn gitlab_ci_local(repo: &Path, args: &[&str]) -> (bool, String) {
    let bin_dir = Path::new(edgeops()).parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let out = Command::new(tool("gitlab-ci-local"))
        .args(["--variables-file", "../ci-variables.yml"])
        .args(args)
        .current_dir(repo)
        .env("PATH", path)
        // No agent of the caller's: the key must come from the pipeline's variable.
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("run gitlab-ci-local");
    (out.status.success(), text(&out))
}

/// Every file's text below `dir`.
fn all_files_text(dir: &Path) -> String {
    let mut all = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(t) = std::fs::read_to_string(&path) {
                all.push_str(&t);
            }
        }
    }
    all
}

/// The nodes `k3s kubectl get nodes` lists on `server`, with their Ready condition.
fn ready_nodes(lab: &support::Lab, server: &str) -> Vec<(String, bool)> {
    let json = lab.ssh_ok(server, "sudo k3s kubectl get nodes -o json");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("node list JSON");
    let mut nodes: Vec<(String, bool)> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let ready = n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (n["metadata"]["name"].as_str().unwrap().to_owned(), ready)
        })
        .collect();
    nodes.sort();
    nodes
}

#[test]
fn gitlab_ci_local_runs_check_plan_and_up_against_two_lab_clusters() {
    let lab = support::Lab::start(6);
    let addresses: Vec<String> = lab.hosts().iter().map(|h| h.address.clone()).collect();
    let mirror = format!("http://{}:8080", lab.bridge_address());
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("sites-repo");
    std::fs::create_dir_all(repo.join("sites")).unwrap();
    // known_hosts from the repository (the inventories name it).
    std::fs::copy(lab.known_hosts_path(), repo.join("known_hosts")).unwrap();
    std::fs::write(
        repo.join("sites/site-a.toml"),
        site_inventory(
            "site-a",
            "a",
            &addresses[0..3],
            &mirror,
            "token_env = \"SITE_A_TOKEN\"\n\n[ci]\nrunner_tag = \"site-a\"\n",
        ),
    )
    .unwrap();
    // site-b's host keys come from the EDGEOPS_KNOWN_HOSTS file variable instead.
    std::fs::write(
        repo.join("sites/site-b.toml"),
        site_inventory("site-b", "b", &addresses[3..6], &mirror, "")
            .replace("known_hosts = \"../known_hosts\"\n", ""),
    )
    .unwrap();
    std::fs::write(
        repo.join(".gitignore"),
        ".edgeops-home/\nedgeops-plan/\n.gitlab-ci-local/\n",
    )
    .unwrap();
    let pipeline = write_pipeline(&repo, &[]);
    let out = validate(&repo.join(".gitlab-ci.yml"));
    assert!(out.status.success(), "{}", text(&out));
    // The CI/CD variables: the SSH key and site-b's known_hosts as file variables (a path:
    // gitlab-ci-local copies the file), the join token as an explicit file variable. Outside
    // the repository.
    std::fs::write(
        dir.path().join("ci-variables.yml"),
        format!(
            "EDGEOPS_SSH_KEY: {}\nEDGEOPS_KNOWN_HOSTS: {}\nSITE_A_TOKEN:\n  type: file\n  values:\n    '*': {SITE_A_TOKEN}\n",
            lab.key_path().display(),
            lab.known_hosts_path().display()
        ),
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "two sites"]);
    // The default branch as GitLab's clone has it: origin/main and origin/HEAD.
    git(
        &repo,
        &[
            "remote",
            "add",
            "origin",
            "git@gitlab.example.com:infra/sites.git",
        ],
    );
    git(&repo, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    git(
        &repo,
        &[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/main",
        ],
    );

    // A merge request that changes site-a only.
    git(&repo, &["checkout", "-qb", "zone-labels"]);
    let a = std::fs::read_to_string(repo.join("sites/site-a.toml")).unwrap();
    std::fs::write(
        repo.join("sites/site-a.toml"),
        a.replace(
            "role = \"agent\"\n",
            "role = \"agent\"\nlabels = { \"example.com/zone\" = \"a\" }\n",
        ),
    )
    .unwrap();
    git(&repo, &["commit", "-qam", "site-a: zone labels"]);
    let (ok, mr) = gitlab_ci_local(
        &repo,
        &[
            "--variable",
            "CI_PIPELINE_SOURCE=merge_request_event",
            "--ignore-predefined-vars",
            "CI_PIPELINE_SOURCE",
        ],
    );
    assert!(ok, "merge request pipeline failed:\n{mr}");
    assert!(mr.contains("PASS  check"), "{mr}");
    assert!(mr.contains("PASS  plan:site-a"), "{mr}");
    assert!(
        !mr.contains("plan:site-b"),
        "site-b did not change, so it has no plan job:\n{mr}"
    );
    assert!(!mr.contains("PASS  up"), "no up on a merge request:\n{mr}");
    // The plan is in the job log and kept as an artifact.
    for host in ["a-01", "a-02", "a-03"] {
        assert!(
            mr.lines()
                .any(|l| l.contains(host) && l.contains("would install")),
            "{host} in the plan log:\n{mr}"
        );
    }
    let artifacts = all_files_text(&repo.join(".gitlab-ci-local/artifacts"));
    assert!(
        artifacts.contains("a-01  server  amd64  -        would install"),
        "the plan artifact edgeops-plan/site-a.txt:\n{artifacts}"
    );
    assert!(
        lab.ssh(&addresses_host(&lab, 0), "test -e /usr/local/bin/k3s")
            .status
            .code()
            == Some(1),
        "plan installed nothing"
    );

    // Merged: the default branch's pipeline brings both sites up.
    git(&repo, &["checkout", "-q", "main"]);
    git(
        &repo,
        &[
            "merge",
            "-q",
            "--no-ff",
            "zone-labels",
            "-m",
            "Merge zone-labels",
        ],
    );
    git(&repo, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    let (ok, main) = gitlab_ci_local(&repo, &[]);
    assert!(ok, "default branch pipeline failed:\n{main}");
    assert!(main.contains("PASS  check"), "{main}");
    assert!(
        main.contains("PASS  up: [site-a,sites/site-a.toml,SITE_A_TOKEN,site-a]"),
        "one matrix job per cluster, pinned by tag:\n{main}"
    );
    assert!(
        main.contains("PASS  up:any-runner: [site-b,sites/site-b.toml]"),
        "{main}"
    );
    assert!(
        main.contains("environment: { name: sites/site-a }"),
        "{main}"
    );
    assert!(
        main.contains("environment: { name: sites/site-b }"),
        "{main}"
    );
    assert!(
        !main.contains("plan:"),
        "no plan on the default branch:\n{main}"
    );
    for (server, names) in [(0, ["a-01", "a-02", "a-03"]), (3, ["b-01", "b-02", "b-03"])] {
        let nodes = ready_nodes(&lab, &addresses_host(&lab, server));
        let expected: Vec<(String, bool)> = names.iter().map(|n| ((*n).to_owned(), true)).collect();
        assert_eq!(
            nodes, expected,
            "every node Ready on cluster of {}",
            names[0]
        );
    }
    // The merged change is deployed: site-a's agents carry the label.
    let json = lab.ssh_ok(
        &addresses_host(&lab, 0),
        "sudo k3s kubectl get nodes -o json",
    );
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let zone = |name: &str| {
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["metadata"]["name"] == name)
            .map(|n| n["metadata"]["labels"]["example.com/zone"].clone())
    };
    assert_eq!(zone("a-02"), Some(serde_json::json!("a")), "{json}");
    assert_eq!(zone("a-03"), Some(serde_json::json!("a")), "{json}");

    // The same pipeline again: nothing to do anywhere.
    let (ok, again) = gitlab_ci_local(&repo, &[]);
    assert!(ok, "second pipeline failed:\n{again}");
    assert!(
        again.contains("3 host(s): 0 changed, 3 nothing to do")
            && again.matches("3 nothing to do").count() == 2,
        "{again}"
    );

    // With the manual gate, the default branch's `up` jobs wait for someone to start them;
    // started by hand (gitlab-ci-local's --manual), one runs while the other keeps waiting.
    write_pipeline(&repo, &["--manual"]);
    git(&repo, &["commit", "-qam", "up by hand"]);
    git(&repo, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    let (ok, listed) = gitlab_ci_local(&repo, &["--list"]);
    assert!(ok, "{listed}");
    for job in [
        "up: [site-a,sites/site-a.toml,SITE_A_TOKEN,site-a]",
        "up:any-runner: [site-b,sites/site-b.toml]",
    ] {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(job) && l.contains(" manual ")),
            "{job} waits for a person:\n{listed}"
        );
    }
    let (ok, gated) = gitlab_ci_local(&repo, &[]);
    assert!(ok, "{gated}");
    assert!(
        gated.contains("PASS  check") && !gated.contains("PASS  up"),
        "{gated}"
    );
    let (ok, started) = gitlab_ci_local(
        &repo,
        &[
            "--manual",
            "up: [site-a,sites/site-a.toml,SITE_A_TOKEN,site-a]",
        ],
    );
    assert!(ok, "{started}");
    assert!(
        started.contains("PASS  up: [site-a,sites/site-a.toml,SITE_A_TOKEN,site-a]")
            && !started.contains("PASS  up:any-runner"),
        "{started}"
    );

    // No secret anywhere: the token and the private key are in no log, artifact or file.
    let key = std::fs::read_to_string(lab.key_path()).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    let everything = format!(
        "{mr}{main}{again}{started}{pipeline}{}",
        all_files_text(&repo.join(".gitlab-ci-local/artifacts"))
    );
    let logs = all_files_text(&repo.join(".gitlab-ci-local/output"));
    for (what, haystack) in [("outputs and artifacts", &everything), ("job logs", &logs)] {
        assert!(!haystack.contains(SITE_A_TOKEN), "join token in {what}");
        assert!(!haystack.contains(key_body), "private key in {what}");
    }
    // The kubeconfig (cluster admin) did not outlive the jobs.
    let leftovers: Vec<PathBuf> = walk(&repo.join(".edgeops-home"))
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == ".kube"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "kubeconfig left behind: {leftovers:?}"
    );
}

/// The lab host name of the i-th lab host (the inventories rename them).
fn addresses_host(lab: &support::Lab, i: usize) -> String {
    lab.hosts()[i].name.clone()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            files.push(path.clone());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    files
}
