//! Lab tests of the k3s simulator (lab/k3s-sim) on lab hosts (namespaced Debian hosts with
//! systemd and sshd, see docs/LAB.md), driven with plain ssh the way an operator would: the
//! installer piped from the lab mirror, tokens read with sudo, kubectl on the hosts and from
//! the workstation. Needs root and `scripts/lab`; fails with a clear reason when they are missing.
//!
//! All tests share one lab (id $K3S_SIM_LAB_ID, default 6, so lab 0 stays free for people) and
//! use disjoint hosts; the last test to finish tears the lab down.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

const PINNED: &str = "v1.31.4+k3s1";
const HOSTS: usize = 7;
const TESTS_IN_FILE: usize = 4;

struct Lab {
    id: String,
    env: HashMap<String, String>,
    addrs: HashMap<String, String>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Lab {
    fn script(id: &str, args: &[&str]) -> Output {
        Command::new(repo().join("scripts/lab"))
            .args(args)
            .env("EDGEOPS_LAB_ID", id)
            .output()
            .expect("run scripts/lab")
    }

    fn up() -> Lab {
        let uid = Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the k3s lab tests need root (namespaces, bridges)"
        );
        let id = std::env::var("K3S_SIM_LAB_ID").unwrap_or_else(|_| "6".to_string());
        let out = Lab::script(&id, &["up", &HOSTS.to_string()]);
        assert!(
            out.status.success(),
            "scripts/lab up {HOSTS} failed:\n{}",
            text(&out)
        );
        let env = text(&Lab::script(&id, &["env"]))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>();
        let status = text(&Lab::script(&id, &["status"]));
        let addrs = status
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (name, addr) = (f.next()?, f.next()?);
                name.starts_with("lab-")
                    .then(|| (name.to_string(), addr.to_string()))
            })
            .collect::<HashMap<_, _>>();
        assert!(
            addrs.len() >= HOSTS,
            "lab status lists {} hosts:\n{status}",
            addrs.len()
        );
        Lab { id, env, addrs }
    }

    fn addr(&self, host: &str) -> &str {
        &self.addrs[host]
    }

    fn mirror(&self) -> &str {
        &self.env["LAB_MIRROR_URL"]
    }

    fn ssh(&self, host: &str, cmd: &str) -> Output {
        Command::new("ssh")
            .args(["-i", &self.env["LAB_KEY"]])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.env["LAB_KNOWN_HOSTS"]
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=20",
            ])
            .arg(format!("{}@{}", self.env["LAB_USER"], self.addr(host)))
            .arg(cmd)
            .output()
            .expect("run ssh")
    }

    fn ssh_ok(&self, host: &str, cmd: &str) -> String {
        let out = self.ssh(host, cmd);
        assert!(
            out.status.success(),
            "{host}: `{cmd}` failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `curl -sfL MIRROR/install.sh | sudo env VARS sh -`, with the mirror as channel + release source.
    fn install(&self, host: &str, vars: &[(&str, &str)]) -> Output {
        let mut env = format!(
            "INSTALL_K3S_CHANNEL_URL={} GITHUB_URL={}",
            sq(&format!("{}/v1-release/channels", self.mirror())),
            sq(&format!("{}/k3s-io/k3s/releases", self.mirror()))
        );
        for (k, v) in vars {
            env.push_str(&format!(" {k}={}", sq(v)));
        }
        self.ssh(
            host,
            &format!(
                "set -o pipefail 2>/dev/null; curl -sfL {}/install.sh | sudo env {env} sh -",
                self.mirror()
            ),
        )
    }

    fn fault(&self, host: &str, args: &[&str]) {
        let mut all = vec!["k3s-fault", host];
        all.extend_from_slice(args);
        let out = Lab::script(&self.id, &all);
        assert!(
            out.status.success(),
            "scripts/lab k3s-fault {host} {args:?}: {}",
            text(&out)
        );
    }

    fn nodes(&self, server: &str) -> Vec<Value> {
        let out = self.ssh(server, "sudo k3s kubectl get nodes -o json");
        if !out.status.success() {
            return vec![];
        }
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }
}

static LAB: OnceLock<Lab> = OnceLock::new();
static FINISHED: Mutex<usize> = Mutex::new(0);

/// Shared lab for this file; dropping the lease of the last test tears the lab down.
struct Lease(&'static Lab);

impl Drop for Lease {
    fn drop(&mut self) {
        let mut done = FINISHED.lock().unwrap_or_else(|e| e.into_inner());
        *done += 1;
        if *done == TESTS_IN_FILE {
            let _ = Lab::script(&self.0.id, &["down"]);
        }
    }
}

fn lab() -> Lease {
    Lease(LAB.get_or_init(Lab::up))
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn ready(node: &Value) -> (String, String, String) {
    let c = node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
    (s("status"), s("reason"), s("lastHeartbeatTime"))
}

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

const K3S_PATHS: &str = "/usr/local/bin/k3s /usr/local/bin/kubectl /usr/local/bin/crictl /usr/local/bin/ctr \
    /usr/local/bin/k3s-killall.sh /usr/local/bin/k3s-uninstall.sh /usr/local/bin/k3s-agent-uninstall.sh \
    /etc/systemd/system/k3s.service /etc/systemd/system/k3s.service.env /etc/systemd/system/k3s-agent.service \
    /etc/systemd/system/k3s-agent.service.env /etc/rancher/k3s /var/lib/rancher/k3s /run/k3s";

fn assert_no_k3s_left(lab: &Lab, host: &str) {
    let left = lab.ssh_ok(
        host,
        &format!(
            "for p in {K3S_PATHS}; do [ -e \"$p\" ] || [ -L \"$p\" ] && echo \"$p\"; done; true"
        ),
    );
    assert_eq!(left.trim(), "", "{host}: files left after uninstall");
    let units = lab.ssh_ok(host, "systemctl list-unit-files 'k3s*' --no-legend | cat");
    assert_eq!(units.trim(), "", "{host}: units left after uninstall");
    let procs = lab.ssh(host, "pgrep -f '/usr/local/bin/k3s (server|agent)'");
    assert!(
        !procs.status.success(),
        "{host}: k3s processes left: {}",
        text(&procs)
    );
}

#[test]
fn server_from_channel_joins_two_agents_and_uninstalls_cleanly() {
    let lease = lab();
    let lab = lease.0;
    let out = lab.install("lab-01", &[("INSTALL_K3S_CHANNEL", "stable")]);
    assert!(out.status.success(), "server install:\n{}", text(&out));
    assert!(
        text(&out).contains(&format!("Using {PINNED} as release")),
        "{}",
        text(&out)
    );

    let token = lab
        .ssh_ok("lab-01", "sudo cat /var/lib/rancher/k3s/server/node-token")
        .trim()
        .to_string();
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "secure token format"
    );
    let ca_hash = lab.ssh_ok(
        "lab-01",
        "sudo sha256sum /var/lib/rancher/k3s/server/tls/server-ca.crt",
    );
    assert_eq!(&token[3..67], ca_hash.split_whitespace().next().unwrap());
    let modes = lab.ssh_ok(
        "lab-01",
        "sudo stat -c '%a %n' /etc/rancher/k3s/k3s.yaml /etc/systemd/system/k3s.service.env",
    );
    assert!(
        modes.contains("600 /etc/rancher/k3s/k3s.yaml")
            && modes.contains("600 /etc/systemd/system/k3s.service.env"),
        "{modes}"
    );
    let kubeconfig = lab.ssh_ok("lab-01", "sudo cat /etc/rancher/k3s/k3s.yaml");
    assert!(kubeconfig.contains("server: https://127.0.0.1:6443"));

    let url = format!("https://{}:6443", lab.addr("lab-01"));
    std::thread::scope(|s| {
        for agent in ["lab-02", "lab-03"] {
            let (url, token) = (&url, &token);
            s.spawn(move || {
                let out = lab.install(
                    agent,
                    &[
                        ("K3S_URL", url),
                        ("K3S_TOKEN", token),
                        ("INSTALL_K3S_VERSION", PINNED),
                    ],
                );
                assert!(
                    out.status.success(),
                    "{agent} agent install:\n{}",
                    text(&out)
                );
                assert_eq!(
                    lab.ssh_ok(agent, "systemctl is-active k3s-agent").trim(),
                    "active"
                );
            });
        }
    });

    let nodes = wait_until("three Ready nodes", Duration::from_secs(120), || {
        let nodes = lab.nodes("lab-01");
        (nodes.len() == 3 && nodes.iter().all(|n| ready(n).0 == "True")).then_some(nodes)
    });
    let mut names: Vec<&str> = nodes
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["lab-01", "lab-02", "lab-03"]);
    for n in &nodes {
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], PINNED);
        assert_eq!(n["status"]["nodeInfo"]["architecture"], "amd64");
        let is_server = n["metadata"]["name"] == "lab-01";
        assert_eq!(
            n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"].is_string(),
            is_server
        );
    }

    // Debian's kubectl on the workstation, with the fetched kubeconfig pointed at the server.
    let kubectl = real_kubectl();
    let kc_path = std::env::temp_dir().join(format!("k3s-sim-lab{}-kubeconfig", lab.id));
    std::fs::write(&kc_path, kubeconfig.replace("https://127.0.0.1:6443", &url)).unwrap();
    let out = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(&kc_path)
        .args(["get", "nodes", "-o", "json"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&kc_path);
    assert!(
        out.status.success(),
        "kubectl from the workstation:\n{}",
        text(&out)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 3);

    let out = lab.ssh("lab-03", "sudo k3s-agent-uninstall.sh");
    assert!(out.status.success(), "agent uninstall:\n{}", text(&out));
    assert_no_k3s_left(lab, "lab-03");
    let out = lab.ssh("lab-01", "sudo k3s-uninstall.sh");
    assert!(out.status.success(), "server uninstall:\n{}", text(&out));
    assert_no_k3s_left(lab, "lab-01");
}

#[test]
fn agent_with_wrong_token_is_refused_and_fails() {
    let lease = lab();
    let lab = lease.0;
    let out = lab.install("lab-04", &[("INSTALL_K3S_VERSION", PINNED)]);
    assert!(out.status.success(), "server install:\n{}", text(&out));
    let token = lab
        .ssh_ok("lab-04", "sudo cat /var/lib/rancher/k3s/server/node-token")
        .trim()
        .to_string();
    let wrong = format!("{}::server:0123456789abcdef0123456789abcdef", &token[..67]);
    let url = format!("https://{}:6443", lab.addr("lab-04"));
    let out = lab.install(
        "lab-05",
        &[
            ("K3S_URL", &url),
            ("K3S_TOKEN", &wrong),
            ("INSTALL_K3S_VERSION", PINNED),
        ],
    );
    assert!(
        !out.status.success(),
        "the agent must fail to start:\n{}",
        text(&out)
    );
    let state = lab.ssh("lab-05", "systemctl is-active k3s-agent");
    assert_ne!(String::from_utf8_lossy(&state.stdout).trim(), "active");
    let journal = lab.ssh_ok("lab-05", "sudo journalctl -u k3s-agent --no-pager");
    assert!(
        journal.contains("401 Unauthorized"),
        "agent journal:\n{journal}"
    );
    let nodes = lab.nodes("lab-04");
    assert!(!nodes.is_empty(), "server lists its own node");
    assert!(
        nodes.iter().all(|n| n["metadata"]["name"] != "lab-05"),
        "refused agent must not register"
    );
}

#[test]
fn corrupted_artifact_fails_the_install_with_a_checksum_error() {
    let lease = lab();
    let lab = lease.0;
    let corrupt = Path::new(&lab.env["LAB_STATE"]).join("mirror/corrupt");
    std::fs::write(&corrupt, "v1.30.8+k3s1/k3s\n").unwrap();
    let out = lab.install("lab-06", &[("INSTALL_K3S_VERSION", "v1.30.8+k3s1")]);
    std::fs::remove_file(&corrupt).unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Download sha256 does not match"),
        "{}",
        text(&out)
    );
    let left = lab.ssh("lab-06", "test -e /usr/local/bin/k3s");
    assert!(
        !left.status.success(),
        "corrupted binary must not be installed"
    );
    let log = std::fs::read_to_string(Path::new(&lab.env["LAB_STATE"]).join("mirror/requests.log"))
        .unwrap();
    let fetched = format!(
        "{} GET /k3s-io/k3s/releases/download/v1.30.8+k3s1/k3s 200",
        lab.addr("lab-06")
    );
    assert!(log.contains(&fetched), "mirror log lacks `{fetched}`");

    // Same install with the artifact intact works.
    let out = lab.install("lab-06", &[("INSTALL_K3S_VERSION", "v1.30.8+k3s1")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        lab.ssh_ok("lab-06", "k3s --version")
            .starts_with("k3s version v1.30.8+k3s1")
    );
}

#[test]
fn fault_knobs_fail_install_crashloop_and_never_ready() {
    let lease = lab();
    let lab = lease.0;
    let host = "lab-07";
    lab.fault(host, &["install-fail"]);
    let out = lab.install(host, &[("INSTALL_K3S_VERSION", PINNED)]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("k3s-sim fault install-fail"),
        "{}",
        text(&out)
    );
    lab.fault(host, &["--clear", "install-fail"]);

    lab.fault(host, &["crashloop"]);
    lab.fault(host, &["slow-install", "1"]);
    let out = lab.install(host, &[("INSTALL_K3S_VERSION", PINNED)]);
    assert!(
        !out.status.success(),
        "a crashing service fails the install:\n{}",
        text(&out)
    );
    assert!(
        text(&out).contains("k3s-sim fault slow-install"),
        "{}",
        text(&out)
    );
    let state = lab.ssh(host, "systemctl is-active k3s");
    assert_ne!(String::from_utf8_lossy(&state.stdout).trim(), "active");
    lab.fault(host, &["--clear", "crashloop"]);
    lab.fault(host, &["--clear", "slow-install"]);

    // never-ready: the node registers and heartbeats but reports NotReady.
    lab.fault(host, &["never-ready"]);
    lab.ssh_ok(
        host,
        "echo 0 | sudo tee /etc/k3s-sim/ready-delay >/dev/null",
    );
    lab.ssh_ok(host, "sudo systemctl restart k3s");
    let first = wait_until("node registered", Duration::from_secs(60), || {
        lab.nodes(host).into_iter().find(|n| ready(n).0 == "False")
    });
    let later = wait_until("a later heartbeat", Duration::from_secs(60), || {
        lab.nodes(host)
            .into_iter()
            .find(|n| ready(n).2 != ready(&first).2)
    });
    let (status, reason, _) = ready(&later);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "KubeletNotReady")
    );
    lab.fault(host, &["--clear", "never-ready"]);
    wait_until(
        "Ready once the fault is cleared",
        Duration::from_secs(60),
        || lab.nodes(host).into_iter().find(|n| ready(n).0 == "True"),
    );
}
