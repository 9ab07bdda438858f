//! Local tests of the lab's k3s simulator (lab/k3s-sim): the release mirror, the installer and
//! simulated k3s server/agent processes, all on 127.0.0.1 without lab hosts. The lab tests in
//! tests/k3s_sim.rs cover the same flows on real (namespaced) hosts with systemd.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const PINNED: &str = "v1.31.4+k3s1";

fn sim_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/k3s-sim")
}

fn require_tool(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "prerequisite missing: `{tool}` must be installed to run the k3s simulator tests"
    );
}

/// The mirror, started on an ephemeral loopback port with its own state dir.
struct Mirror {
    child: Child,
    port: u16,
    state: TempDir,
}

impl Mirror {
    fn start(extra: &[&str]) -> Mirror {
        require_tool("python3");
        let state = TempDir::new().unwrap();
        let mut child = Command::new("python3")
            .arg(sim_dir().join("mirror.py"))
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state.path())
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start mirror.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("mirror did not report its address: {line:?}"));
        Mirror { child, port, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> String {
        std::fs::read_to_string(self.state.path().join("requests.log")).unwrap_or_default()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl -s -i URL`: (status, raw response).
fn http_get(url: &str) -> (u16, String) {
    require_tool("curl");
    let out = Command::new("curl")
        .args(["-s", "-i", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A scratch install root: bin and systemd dirs plus fake `systemctl` and `uname` first in PATH.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new(machine: &str) -> Sandbox {
        let dir = TempDir::new().unwrap();
        for d in ["bin", "systemd", "fake"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let log = dir.path().join("systemctl.log");
        write_exec(
            &dir.path().join("fake/systemctl"),
            &format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
        );
        write_exec(
            &dir.path().join("fake/uname"),
            &format!("#!/bin/sh\necho {machine}\n"),
        );
        Sandbox { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs the installer served by the mirror with the given environment, like `curl | sh -`.
    fn install(&self, mirror: &Mirror, name: &str, env: &[(&str, &str)]) -> Output {
        let script = http_get(&mirror.url("/install.sh")).1;
        let body = script
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap();
        let path = format!(
            "{}:{}",
            self.path("fake").display(),
            std::env::var("PATH").unwrap()
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &body, "install.sh"])
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("INSTALL_K3S_BIN_DIR", self.path("bin"))
            .env("INSTALL_K3S_SYSTEMD_DIR", self.path("systemd"))
            .env("INSTALL_K3S_NAME", name)
            .env(
                "INSTALL_K3S_CHANNEL_URL",
                mirror.url("/v1-release/channels"),
            )
            .env("GITHUB_URL", mirror.url("/k3s-io/k3s/releases"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    Command::new("chmod").arg("755").arg(path).status().unwrap();
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Child processes killed on drop (simulated k3s server/agents).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn kubectl_json(k3s: &Path, kubeconfig: &Path, args: &[&str]) -> Option<Value> {
    let out = Command::new(k3s)
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .args(["-o", "json"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn ready_status(node: &Value) -> String {
    node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

#[test]
fn mirror_serves_channels_redirects_and_checksummed_assets() {
    let mirror = Mirror::start(&[]);
    let (status, body) = http_get(&mirror.url("/v1-release/channels"));
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(body.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(json["resourceType"], "channels");
    let stable = json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "stable")
        .unwrap();
    assert_eq!(stable["latest"], PINNED);
    for channel in ["latest", "v1.30", "v1.31"] {
        assert!(
            json["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["id"] == channel),
            "channel {channel}"
        );
    }

    let (status, head) = http_get(&mirror.url("/v1-release/channels/v1.30"));
    assert_eq!(status, 302);
    assert!(
        head.contains("/k3s-io/k3s/releases/tag/v1.30.8+k3s1\r\n"),
        "{head}"
    );

    // The '+' arrives URL-encoded from the real installer; both spellings name the same asset.
    let sums =
        http_get(&mirror.url("/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1/sha256sum-arm64.txt")).1;
    let line = sums.lines().last().unwrap();
    assert!(line.ends_with("  k3s-arm64"), "{line}");
    let out = Command::new("sh")
        .args([
            "-c",
            &format!(
                "curl -s '{}' | sha256sum",
                mirror.url("/k3s-io/k3s/releases/download/v1.31.4+k3s1/k3s-arm64")
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next(),
        line.split_whitespace().next()
    );
    assert!(
        mirror
            .requests()
            .contains("GET /k3s-io/k3s/releases/download/v1.31.4+k3s1/k3s-arm64 200")
    );
}

#[test]
fn installer_resolves_channel_writes_files_and_is_idempotent() {
    let mirror = Mirror::start(&[]);
    let sb = Sandbox::new("aarch64");
    let env = [
        ("INSTALL_K3S_CHANNEL", "v1.30"),
        (
            "INSTALL_K3S_EXEC",
            "server --cluster-init --node-label=tier=edge",
        ),
        ("K3S_TOKEN", "s3cr3t-value"),
        ("K3S_KUBECONFIG_MODE", "644"),
    ];
    let out = sb.install(&mirror, "simtest-a", &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Using v1.30.8+k3s1 as release"),
        "{}",
        text(&out)
    );
    assert!(
        mirror
            .requests()
            .contains("/download/v1.30.8+k3s1/k3s-arm64 200"),
        "{}",
        mirror.requests()
    );

    let version = Command::new(sb.path("bin/k3s"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("k3s version v1.30.8+k3s1"));
    for link in ["crictl", "ctr"] {
        assert_eq!(
            std::fs::read_link(sb.path(&format!("bin/{link}"))).unwrap(),
            Path::new("k3s")
        );
    }
    assert!(sb.path("bin/k3s-killall.sh").exists());
    assert!(sb.path("bin/k3s-simtest-a-uninstall.sh").exists());
    let unit = std::fs::read_to_string(sb.path("systemd/k3s-simtest-a.service")).unwrap();
    assert!(unit.contains("Type=notify"), "{unit}");
    assert!(
        unit.contains("'--cluster-init'") && unit.contains("'--node-label=tier=edge'"),
        "{unit}"
    );
    let env_file = sb.path("systemd/k3s-simtest-a.service.env");
    let env_text = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        env_text.contains("K3S_TOKEN='s3cr3t-value'")
            && env_text.contains("K3S_KUBECONFIG_MODE='644'")
    );
    let mode = Command::new("stat")
        .args(["-c", "%a"])
        .arg(&env_file)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "600");
    let log = std::fs::read_to_string(sb.path("systemctl.log")).unwrap();
    assert!(log.contains("restart k3s-simtest-a"), "{log}");

    // Same settings again: nothing changed, so no restart (the real installer's hash check).
    let again = sb.install(&mirror, "simtest-a", &env);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("No change detected so skipping service start"),
        "{}",
        text(&again)
    );
    assert!(
        text(&again).contains("installed k3s matches hash"),
        "{}",
        text(&again)
    );
}

#[test]
fn installer_fails_on_corrupted_artifact_and_unsupported_arch() {
    let mirror = Mirror::start(&["--corrupt", "v1.31.4+k3s1/k3s"]);
    let sb = Sandbox::new("x86_64");
    let out = sb.install(&mirror, "simtest-b", &[("INSTALL_K3S_VERSION", PINNED)]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("[ERROR]  Download sha256 does not match"),
        "{}",
        text(&out)
    );
    assert!(
        !sb.path("bin/k3s").exists(),
        "a corrupted binary must not be installed"
    );

    let odd = Sandbox::new("mips");
    let out = odd.install(&mirror, "simtest-c", &[("INSTALL_K3S_VERSION", PINNED)]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Unsupported architecture mips"),
        "{}",
        text(&out)
    );

    let agent = Sandbox::new("x86_64");
    let out = agent.install(
        &mirror,
        "simtest-d",
        &[("K3S_URL", "https://10.0.0.1:6443")],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("K3S_TOKEN or K3S_TOKEN_FILE is not defined"),
        "{}",
        text(&out)
    );
}

/// Server + two agents + a joining server on loopback; checks nodes, tokens, kubeconfig and
/// that a wrong token is refused as k3s refuses it (logged and retried, never an exit).
#[test]
fn server_agents_and_ha_join_form_a_cluster() {
    let mirror = Mirror::start(&[]);
    let sb = Sandbox::new("x86_64");
    let out = sb.install(
        &mirror,
        "simtest-e",
        &[
            ("INSTALL_K3S_VERSION", PINNED),
            ("INSTALL_K3S_SKIP_START", "true"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let k3s = sb.path("bin/k3s");
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let kubeconfig = sb.path("k3s.yaml");
    let mut procs = Procs(vec![]);
    let spawn = |args: Vec<String>, env: &[(&str, &str)]| {
        let mut cmd = Command::new(&k3s);
        cmd.args(&args).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    };
    let s = |v: &str| v.to_string();
    procs.0.push(spawn(
        vec![
            s("server"),
            s("--cluster-init"),
            s("--data-dir"),
            sb.path("srv1").display().to_string(),
            s("--bind-address"),
            s("127.0.0.1"),
            s("--https-listen-port"),
            port.to_string(),
            s("--write-kubeconfig"),
            kubeconfig.display().to_string(),
            s("--node-name"),
            s("srv1"),
            s("--node-taint"),
            s("CriticalAddonsOnly=true:NoExecute"),
            s("--node-ip"),
            s("127.0.0.1"),
        ],
        &[],
    ));
    let token_path = sb.path("srv1/server/node-token");
    let token = wait_until("node-token", Duration::from_secs(60), || {
        std::fs::read_to_string(&token_path)
            .ok()
            .filter(|t| !t.is_empty())
    });
    let token = token.trim().to_string();
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "token format"
    );
    let ca = std::fs::read(sb.path("srv1/server/tls/server-ca.crt")).unwrap();
    let ca_hash = Command::new("sha256sum")
        .arg(sb.path("srv1/server/tls/server-ca.crt"))
        .output()
        .unwrap();
    let ca_hash = String::from_utf8_lossy(&ca_hash.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(!ca.is_empty());
    assert_eq!(&token[3..67], ca_hash, "token carries the CA hash");
    let kc = wait_until("kubeconfig", Duration::from_secs(30), || {
        std::fs::read_to_string(&kubeconfig).ok()
    });
    assert!(kc.contains(&format!("server: https://127.0.0.1:{port}")));

    for agent in ["agent1", "agent2"] {
        procs.0.push(spawn(
            vec![
                s("agent"),
                s("--data-dir"),
                sb.path(agent).display().to_string(),
                s("--node-name"),
                s(agent),
                s("--node-label"),
                s("tier=edge"),
            ],
            &[("K3S_URL", &url), ("K3S_TOKEN", &token)],
        ));
    }
    let port2 = free_port();
    procs.0.push(spawn(
        vec![
            s("server"),
            s("--server"),
            url.clone(),
            s("--data-dir"),
            sb.path("srv2").display().to_string(),
            s("--bind-address"),
            s("127.0.0.1"),
            s("--https-listen-port"),
            port2.to_string(),
            s("--write-kubeconfig"),
            sb.path("k3s-2.yaml").display().to_string(),
            s("--node-name"),
            s("srv2"),
        ],
        &[("K3S_TOKEN", &token)],
    ));

    let nodes = wait_until("4 Ready nodes", Duration::from_secs(90), || {
        let list = kubectl_json(&k3s, &kubeconfig, &["get", "nodes"])?;
        let items = list["items"].as_array()?.clone();
        (items.len() == 4 && items.iter().all(|n| ready_status(n) == "True")).then_some(items)
    });
    for n in &nodes {
        assert_eq!(n["kind"], "Node");
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], PINNED);
        assert_eq!(n["status"]["nodeInfo"]["architecture"], "amd64");
        let name = n["metadata"]["name"].as_str().unwrap();
        let labels = &n["metadata"]["labels"];
        if name.starts_with("srv") {
            assert_eq!(
                labels["node-role.kubernetes.io/control-plane"], "true",
                "{name}"
            );
            assert_eq!(labels["node-role.kubernetes.io/etcd"], "true", "{name}");
        } else {
            assert_eq!(labels["tier"], "edge");
            assert!(
                labels
                    .get("node-role.kubernetes.io/control-plane")
                    .is_none()
            );
        }
    }
    let srv1 = nodes
        .iter()
        .find(|n| n["metadata"]["name"] == "srv1")
        .unwrap();
    assert_eq!(srv1["spec"]["taints"][0]["key"], "CriticalAddonsOnly");
    // The joined server has the cluster's CA, hence the same token.
    let token2 = wait_until("srv2 token", Duration::from_secs(10), || {
        std::fs::read_to_string(sb.path("srv2/server/node-token")).ok()
    });
    assert_eq!(token2.trim(), token);
    // Secrets never show up in node annotations.
    let all = serde_json::to_string(&nodes).unwrap();
    assert!(!all.contains(token.rsplit(':').next().unwrap()));

    // kubectl's flag forms (`-o=...`, `-l=...`, `-n=...`) and its completion command.
    let forms = Command::new(&k3s)
        .args(["kubectl", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "get",
            "nodes",
            "-l=kubernetes.io/os=linux",
            "-o=jsonpath={.items[*].metadata.name}",
        ])
        .output()
        .unwrap();
    assert!(forms.status.success(), "{}", text(&forms));
    let listed = String::from_utf8_lossy(&forms.stdout).to_string();
    assert!(listed.contains("srv1"), "{listed}");
    let ns = Command::new(&k3s)
        .args(["kubectl", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["get", "helmcharts", "-n=kube-system", "-o=name"])
        .output()
        .unwrap();
    assert!(ns.status.success(), "{}", text(&ns));
    let completion = Command::new(&k3s)
        .args(["kubectl", "completion", "bash"])
        .output()
        .unwrap();
    assert!(completion.status.success(), "{}", text(&completion));
    let script = String::from_utf8_lossy(&completion.stdout).to_string();
    let sourced = Command::new("bash")
        .args(["-c", &format!("{script}\ncomplete -p kubectl")])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&sourced.stdout).contains("__start_kubectl"),
        "{}",
        text(&sourced)
    );

    // A wrong secret with the right CA hash: refused as k3s refuses it, by logging the reason
    // and retrying (every 5 s) without ever exiting.
    let bad_token = format!("{}::server:not-the-secret", &token[..67]);
    let bad_log = std::fs::File::create(sb.path("bad.log")).unwrap();
    let mut bad = Command::new(&k3s)
        .args(["agent", "--data-dir"])
        .arg(sb.path("bad"))
        .args(["--node-name", "bad"])
        .env("K3S_URL", &url)
        .env("K3S_TOKEN", &bad_token)
        .stdout(Stdio::null())
        .stderr(bad_log)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(7));
    let still_running = bad.try_wait().unwrap().is_none();
    let _ = bad.kill();
    let _ = bad.wait();
    let bad_text = std::fs::read_to_string(sb.path("bad.log")).unwrap();
    assert!(still_running, "a refused agent keeps retrying:\n{bad_text}");
    let refusals = bad_text
        .matches("Waiting to retrieve agent configuration; server is not ready")
        .count();
    assert!(
        refusals >= 2 && bad_text.contains("401 Unauthorized"),
        "{bad_text}"
    );
    let nodes = kubectl_json(&k3s, &kubeconfig, &["get", "nodes"]).unwrap();
    assert!(
        nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["metadata"]["name"] != "bad")
    );

    // Cordon through the joined server's API (proxied to the first server).
    let out = Command::new(&k3s)
        .args(["kubectl", "--kubeconfig"])
        .arg(sb.path("k3s-2.yaml"))
        .args(["cordon", "agent1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let a1 = kubectl_json(&k3s, &kubeconfig, &["get", "node", "agent1"]).unwrap();
    assert_eq!(a1["spec"]["unschedulable"], true);
}

/// A gitlab-runner HelmChart manifest named `name` with these spec lines and values.
fn runner_chart(name: &str, spec: &str, values: &str) -> String {
    format!(
        "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: {name}\n  namespace: kube-system\n\
         spec:\n{spec}  targetNamespace: gitlab-runner\n  createNamespace: true\n  valuesContent: |-\n{values}"
    )
}

#[test]
fn helmchart_manifests_are_looked_up_in_the_mirror_and_their_values_checked() {
    let mirror = Mirror::start(&[]);
    let sb = Sandbox::new("x86_64");
    let out = sb.install(
        &mirror,
        "simtest-f",
        &[
            ("INSTALL_K3S_VERSION", PINNED),
            ("INSTALL_K3S_SKIP_START", "true"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let k3s = sb.path("bin/k3s");
    let data = sb.path("srv");
    let manifests = data.join("server/manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("gitlab-agent.yaml"),
        "apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: gitlab-agent\n  namespace: kube-system\n\
         spec:\n  repo: https://charts.gitlab.io\n  chart: gitlab-agent\n  version: 2.9.0\n  targetNamespace: gitlab-agent\n\
         \x20 createNamespace: true\n  valuesContent: |-\n    config:\n      kasAddress: wss://kas.gitlab.com\n",
    )
    .unwrap();
    let gitlab = "  repo: https://charts.gitlab.io\n  chart: gitlab-runner\n";
    let glrt = "    gitlabUrl: https://gitlab.example\n    runnerToken: glrt-abc\n";
    for (name, spec, values) in [
        (
            "runner-ok",
            gitlab.to_owned(),
            format!("{glrt}    runners:\n      config: |\n        [[runners]]\n"),
        ),
        (
            "runner-pinned",
            format!("{gitlab}  version: 0.70.0\n"),
            glrt.to_owned(),
        ),
        (
            "runner-missing",
            format!("{gitlab}  version: 9.9.9\n"),
            glrt.to_owned(),
        ),
        (
            "runner-elsewhere",
            "  repo: https://charts.example.org/stable\n  chart: gitlab-runner\n".to_owned(),
            glrt.to_owned(),
        ),
        (
            "runner-tags",
            gitlab.to_owned(),
            format!("{glrt}    runners:\n      tags: k3s\n      locked: true\n"),
        ),
        (
            "runner-legacy",
            gitlab.to_owned(),
            "    runnerRegistrationToken: GR1348941abc\n".to_owned(),
        ),
    ] {
        std::fs::write(
            manifests.join(format!("{name}.yaml")),
            runner_chart(name, &spec, &values),
        )
        .unwrap();
    }
    let kubeconfig = sb.path("k3s.yaml");
    let _procs = Procs(vec![loopback_server(
        &k3s,
        &["--disable", "traefik"],
        &data,
        &kubeconfig,
    )]);
    let charts = wait_until("helmchart", Duration::from_secs(60), || {
        let list = kubectl_json(&k3s, &kubeconfig, &["get", "helmcharts", "-A"])?;
        let items = list["items"].as_array()?.clone();
        (items.len() >= 7).then_some(items)
    });
    assert_eq!(
        charts.len(),
        7,
        "traefik is disabled, only our charts remain"
    );
    let by_name = |name: &str| {
        charts
            .iter()
            .find(|c| c["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no chart {name}"))
    };
    let failed = |name: &str| {
        let chart = by_name(name);
        let cond = chart["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Failed")
            .unwrap_or_else(|| panic!("no Failed condition on {name}"))
            .clone();
        (cond["status"] == "True").then(|| cond["message"].as_str().unwrap().to_owned())
    };
    // k3s's helm controller never puts the install's outcome on the HelmChart: Failed stays
    // False on every chart, whatever its job does.
    for name in [
        "runner-ok",
        "runner-pinned",
        "runner-missing",
        "runner-elsewhere",
        "runner-tags",
        "runner-legacy",
        "gitlab-agent",
    ] {
        assert_eq!(failed(name), None, "{name}");
    }
    // A failing install: the job's pod crash-loops, helm's error only in its log.
    let logs = |args: &[&str]| {
        let out = Command::new(&k3s)
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("logs")
            .args(args)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            .filter(|text| !text.is_empty())
    };
    for (name, error) in [
        (
            "runner-missing",
            r#"Error: INSTALLATION FAILED: chart "gitlab-runner" version "9.9.9" not found in https://charts.gitlab.io repository"#,
        ),
        (
            "runner-elsewhere",
            "Error: INSTALLATION FAILED: looks like \"https://charts.example.org/stable\" is not a valid chart \
             repository or cannot be reached: failed to fetch https://charts.example.org/stable/index.yaml : 404 Not Found",
        ),
    ] {
        let job = format!("job/helm-install-{name}");
        let log = wait_until("helm job log", Duration::from_secs(30), || {
            logs(&["-n", "kube-system", &job])
        });
        assert!(log.lines().any(|l| l == error), "{name}: {log}");
        let job = kubectl_json(
            &k3s,
            &kubeconfig,
            &[
                "get",
                "jobs",
                "-n",
                "kube-system",
                &format!("helm-install-{name}"),
            ],
        )
        .unwrap();
        assert_eq!(job["status"]["active"], 1, "{job}");
        assert!(job["status"]["succeeded"].is_null(), "{job}");
    }
    // Runner values the runner refuses: the install succeeds, the runner's pod cannot register
    // and says why in its log.
    let tags = wait_until("runner log", Duration::from_secs(30), || {
        logs(&["-n", "gitlab-runner", "deployment/runner-tags"])
    });
    assert!(tags.contains("Registration attempt 1 of 30"), "{tags}");
    assert!(
        tags.contains(
            "FATAL: Runner configuration other than name and executor configuration is reserved \
             (specifically --locked, --access-level, --run-untagged, --maximum-timeout, --paused, \
             --tag-list, and --maintenance-note) and cannot be specified when registering with a \
             runner authentication token."
        ),
        "{tags}"
    );
    let legacy = wait_until("runner log", Duration::from_secs(30), || {
        logs(&["-n", "gitlab-runner", "deployment/runner-legacy"])
    });
    assert!(legacy.contains("410 Gone"), "{legacy}");
    assert!(
        legacy.contains("PANIC: Failed to register the runner."),
        "{legacy}"
    );
    assert!(!legacy.contains("GR1348941abc"), "token in {legacy}");
    // Values the runner takes: its Deployment becomes available.
    wait_until("runner-ok available", Duration::from_secs(30), || {
        let dep = kubectl_json(
            &k3s,
            &kubeconfig,
            &["get", "deployments", "-n", "gitlab-runner", "runner-ok"],
        )?;
        (dep["status"]["readyReplicas"] == 1).then_some(())
    });
    let job = kubectl_json(
        &k3s,
        &kubeconfig,
        &[
            "get",
            "jobs",
            "-n",
            "kube-system",
            "helm-install-runner-tags",
        ],
    )
    .unwrap();
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    let chart = by_name("gitlab-agent");
    assert_eq!(
        chart["spec"]["valuesContent"],
        "config:\n  kasAddress: wss://kas.gitlab.com"
    );
    assert_eq!(chart["status"]["jobName"], "helm-install-gitlab-agent");
    let conds = chart["status"]["conditions"].as_array().unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "JobCreated" && c["status"] == "True")
    );
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Failed" && c["status"] == "False")
    );
    let ns = kubectl_json(&k3s, &kubeconfig, &["get", "namespaces"]).unwrap();
    assert!(
        ns["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["metadata"]["name"] == "gitlab-agent")
    );
    let job = kubectl_json(
        &k3s,
        &kubeconfig,
        &[
            "get",
            "jobs",
            "-n",
            "kube-system",
            "helm-install-gitlab-agent",
        ],
    )
    .unwrap();
    assert_eq!(job["status"]["succeeded"], 1);
}

/// The pinned k3s installed in `sb` (install name `name`) and one server started as `node` on a
/// free loopback port: its kubeconfig, and the process (stopped when dropped).
fn one_server(sb: &Sandbox, mirror: &Mirror, name: &str, node: &str) -> (PathBuf, Procs) {
    let out = sb.install(
        mirror,
        name,
        &[
            ("INSTALL_K3S_VERSION", PINNED),
            ("INSTALL_K3S_SKIP_START", "true"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let kubeconfig = sb.path("k3s.yaml");
    let server = loopback_server(
        &sb.path("bin/k3s"),
        &["--node-name", node],
        &sb.path("srv"),
        &kubeconfig,
    );
    (kubeconfig, Procs(vec![server]))
}

/// `k3s server ARGS` on 127.0.0.1 at a free port, its data in `data`, writing `kubeconfig`.
fn loopback_server(k3s: &Path, args: &[&str], data: &Path, kubeconfig: &Path) -> Child {
    Command::new(k3s)
        .arg("server")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(["--bind-address", "127.0.0.1", "--https-listen-port"])
        .arg(free_port().to_string())
        .arg("--write-kubeconfig")
        .arg(kubeconfig)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The kubectl used to prove the API is Kubernetes-shaped: $K3S_SIM_KUBECTL, else `kubectl` on
/// PATH (Debian's `kubernetes-client` package works: v1.20, checked against this simulator).
fn real_kubectl() -> String {
    let kubectl = std::env::var("K3S_SIM_KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let ok = Command::new(&kubectl)
        .args(["version", "--client"])
        .output()
        .map(|o| o.status.success());
    assert!(
        matches!(ok, Ok(true)),
        "prerequisite missing: a real kubectl (apt-get install kubernetes-client, or set K3S_SIM_KUBECTL)"
    );
    kubectl
}

#[test]
fn real_kubectl_reads_the_simulated_api() {
    let kubectl = real_kubectl();
    let mirror = Mirror::start(&[]);
    let sb = Sandbox::new("aarch64");
    let (kubeconfig, _procs) = one_server(&sb, &mirror, "simtest-g", "pi-1");
    let run = |args: &[&str]| {
        let out = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    };
    let table = wait_until("Ready in kubectl's table", Duration::from_secs(60), || {
        let (ok, out) = run(&["get", "nodes"]);
        (ok && out.contains(" Ready ")).then_some(out)
    });
    assert!(
        table.contains("NAME") && table.contains("ROLES") && table.contains(PINNED),
        "{table}"
    );
    assert!(table.contains("control-plane,master"), "{table}");
    let (ok, json) = run(&["get", "nodes", "-o", "json"]);
    assert!(ok, "{json}");
    let list: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        list["items"][0]["status"]["nodeInfo"]["architecture"],
        "arm64"
    );
    let (ok, out) = run(&["cordon", "pi-1"]);
    assert!(ok && out.contains("node/pi-1 cordoned"), "{out}");
    let (ok, out) = run(&["get", "nodes"]);
    assert!(ok && out.contains("Ready,SchedulingDisabled"), "{out}");
    let (ok, out) = run(&["get", "helmcharts", "-A"]);
    assert!(ok && out.contains("helm-install-traefik"), "{out}");

    // Workloads and a drain, all through the real kubectl: its own drain code meets the
    // simulated scheduler, eviction API and budget. One node: an evicted web pod has nowhere
    // to go, so the budget (one of two needed) blocks the second eviction until the timeout.
    let (ok, out) = run(&["uncordon", "pi-1"]);
    assert!(ok && out.contains("node/pi-1 uncordoned"), "{out}");
    let manifest = sb.path("workloads.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\n\
         spec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    \
         metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n---\n\
         apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web, namespace: default}\n\
         spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {name: bare, namespace: default}\n\
         spec: {containers: [{name: bare, image: busybox}]}\n",
    )
    .unwrap();
    // No OpenAPI in the simulator: kubectl's client-side validation is off.
    let (ok, out) = run(&[
        "apply",
        "--validate=false",
        "-f",
        manifest.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("deployment.apps/web created"), "{out}");
    wait_until(
        "three pods Running and Ready",
        Duration::from_secs(30),
        || {
            let (ok, out) = run(&["get", "pods", "-o", "wide"]);
            (ok && out.matches(" 1/1 ").count() == 3 && out.contains("pi-1")).then_some(())
        },
    );
    let (ok, out) = run(&["drain", "pi-1"]);
    assert!(!ok, "{out}");
    // kubectl's wording of this refusal changed over the releases (1.20: "Pods not managed by
    // ReplicationController, ...", later "Pods that declare no controller"); flag and pod did not.
    assert!(
        out.contains("(use --force to override): default/bare"),
        "{out}"
    );
    assert!(
        out.contains("There are pending nodes to be drained:"),
        "{out}"
    );
    let (ok, out) = run(&[
        "drain",
        "pi-1",
        "--ignore-daemonsets",
        "--force",
        "--timeout=6s",
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("node/pi-1 already cordoned"), "{out}");
    assert!(out.contains("pod/bare evicted"), "{out}");
    assert!(
        out.contains("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "{out}"
    );
    // 1.20 says "drain did not complete within 6s", later releases "global timeout reached: 6s".
    assert!(
        out.contains("global timeout reached: 6s") || out.contains("did not complete within 6s"),
        "{out}"
    );
    let (ok, out) = run(&["get", "pods"]);
    assert!(
        ok && out.contains("Pending") && out.contains("Running"),
        "{out}"
    );
}

/// One kept-alive connection, several requests in turn (what kubectl's Go client does): each
/// request gets exactly one answer. A handler that answered and then let the generic path answer
/// too left a stray response queued, which the client read as the reply to its next request
/// (kubectl saw a 405 for a GET). Checked with Python's http.client on one TLS connection, so the
/// stray answer, if any, is always read in place of the next one.
#[test]
fn a_kept_alive_connection_gets_one_answer_per_request() {
    let mirror = Mirror::start(&[]);
    let sb = Sandbox::new("x86_64");
    let (kubeconfig, _procs) = one_server(&sb, &mirror, "simtest-k", "n1");
    wait_until("the node Ready", Duration::from_secs(60), || {
        let node = kubectl_json(&sb.path("bin/k3s"), &kubeconfig, &["get", "node", "n1"])?;
        (ready_status(&node) == "True").then_some(())
    });
    // Every write path of the workload API, then a read, on the one connection; the script
    // prints each answer's status and finally whether anything more arrived unasked.
    let script = r#"
import http.client, json, socket, sys
sys.path.insert(0, sys.argv[1])
import k3s
host, port, ctx = k3s.kube_client(sys.argv[2])
conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=15)
deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                   "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}
base = "/apis/apps/v1/namespaces/default/deployments"
steps = [("GET", base + "/web", None), ("POST", base, deploy), ("GET", base + "/web", None),
         ("PATCH", base + "/web", {"spec": {"replicas": 2}}), ("GET", base + "/web", None),
         ("DELETE", base + "/web", {}), ("GET", base + "/web", None), ("GET", "/version", None)]
for method, path, body in steps:
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json"})
    r = conn.getresponse()
    r.read()
    print(method, path, r.status)
conn.sock.settimeout(1)
try:
    extra = conn.sock.recv(1)
    print("extra", repr(extra))
except socket.timeout:
    print("nothing more")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(sim_dir())
        .arg(&kubeconfig)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let statuses: Vec<&str> = said
        .lines()
        .filter_map(|l| l.rsplit(' ').next().filter(|_| !l.starts_with("nothing")))
        .collect();
    assert_eq!(
        statuses,
        ["404", "201", "200", "200", "200", "200", "404", "200"],
        "{said}"
    );
    assert!(said.ends_with("nothing more\n"), "{said}");
}
