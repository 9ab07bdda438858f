//! Lab tests of the k3s simulator (lab/k3s-sim) on lab hosts (namespaced Debian hosts with
//! systemd and sshd, see docs/LAB.md), driven with plain ssh the way an operator would: the
//! installer piped from the lab mirror, tokens read with sudo, kubectl on the hosts and from
//! the workstation. Each test owns a lab (tests/support allocates the id); root is required.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Lab;

const PINNED: &str = "v1.31.4+k3s1";

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

fn mirror(lab: &Lab) -> String {
    format!("http://{}:8080", lab.bridge_address())
}

/// `curl -sfL MIRROR/install.sh | sudo env VARS sh -`, with the mirror as channel + release source.
fn install(lab: &Lab, host: &str, vars: &[(&str, &str)]) -> Output {
    let m = mirror(lab);
    let mut env = format!(
        "INSTALL_K3S_CHANNEL_URL={} GITHUB_URL={}",
        sq(&format!("{m}/v1-release/channels")),
        sq(&format!("{m}/k3s-io/k3s/releases"))
    );
    for (k, v) in vars {
        env.push_str(&format!(" {k}={}", sq(v)));
    }
    lab.ssh(
        host,
        &format!("set -o pipefail; curl -sfL {m}/install.sh | sudo env {env} sh -"),
    )
}

fn nodes(lab: &Lab, server: &str) -> Vec<Value> {
    let out = lab.ssh(server, "sudo k3s kubectl get nodes -o json");
    if !out.status.success() {
        return vec![];
    }
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

fn addr(lab: &Lab, host: &str) -> String {
    lab.host(host).address.clone()
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
    let lab = Lab::start(3);
    let out = install(&lab, "lab-01", &[("INSTALL_K3S_CHANNEL", "stable")]);
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

    let url = format!("https://{}:6443", addr(&lab, "lab-01"));
    std::thread::scope(|s| {
        for agent in ["lab-02", "lab-03"] {
            let (url, token, lab) = (&url, &token, &lab);
            s.spawn(move || {
                let out = install(
                    lab,
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
        let nodes = nodes(&lab, "lab-01");
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
    let kc_path = std::env::temp_dir().join(format!("k3s-sim-lab{}-kubeconfig", lab.id()));
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
    assert_no_k3s_left(&lab, "lab-03");
    let out = lab.ssh("lab-01", "sudo k3s-uninstall.sh");
    assert!(out.status.success(), "server uninstall:\n{}", text(&out));
    assert_no_k3s_left(&lab, "lab-01");
}

#[test]
fn agent_with_wrong_token_is_refused_and_hangs_like_k3s() {
    let lab = Lab::start(2);
    let out = install(&lab, "lab-01", &[("INSTALL_K3S_VERSION", PINNED)]);
    assert!(out.status.success(), "server install:\n{}", text(&out));
    let token = lab
        .ssh_ok("lab-01", "sudo cat /var/lib/rancher/k3s/server/node-token")
        .trim()
        .to_string();
    let wrong = format!("{}::server:0123456789abcdef0123456789abcdef", &token[..67]);
    let url = format!("https://{}:6443", addr(&lab, "lab-01"));
    // Real k3s never exits on a refused join: the installer's `systemctl restart` (Type=notify)
    // waits for a READY=1 that never comes. `timeout` ends the installer here (exit 124).
    let m = mirror(&lab);
    let started = std::time::Instant::now();
    let out = lab.ssh(
        "lab-02",
        &format!(
            "set -o pipefail; curl -sfL {m}/install.sh | sudo timeout 15 env \
             INSTALL_K3S_CHANNEL_URL={m}/v1-release/channels GITHUB_URL={m}/k3s-io/k3s/releases \
             INSTALL_K3S_VERSION={PINNED} K3S_URL={url} K3S_TOKEN={} sh -",
            sq(&wrong)
        ),
    );
    assert_eq!(
        out.status.code(),
        Some(124),
        "the install must hang until timeout:\n{}",
        text(&out)
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(14));
    let state = lab.ssh("lab-02", "systemctl is-active k3s-agent");
    assert_eq!(
        String::from_utf8_lossy(&state.stdout).trim(),
        "activating",
        "the agent keeps trying"
    );
    let journal = lab.ssh_ok("lab-02", "sudo journalctl -u k3s-agent --no-pager");
    let retries = journal
        .matches("Waiting to retrieve agent configuration; server is not ready")
        .count();
    assert!(
        retries >= 2 && journal.contains("401 Unauthorized"),
        "agent journal:\n{journal}"
    );
    let nodes = nodes(&lab, "lab-01");
    assert!(!nodes.is_empty(), "server lists its own node");
    assert!(
        nodes.iter().all(|n| n["metadata"]["name"] != "lab-02"),
        "refused agent must not register"
    );
    // A server restarted with another token cannot read its datastore and exits.
    let out = lab.ssh(
        "lab-01",
        "sudo sh -c 'echo K3S_TOKEN=another-secret >>/etc/systemd/system/k3s.service.env \
         && systemctl restart k3s'",
    );
    assert!(!out.status.success(), "{}", text(&out));
    let journal = lab.ssh_ok("lab-01", "sudo journalctl -u k3s --no-pager");
    assert!(
        journal.contains("bootstrap data already found and encrypted with different token"),
        "server journal:\n{journal}"
    );
}

#[test]
fn corrupted_artifact_fails_the_install_with_a_checksum_error() {
    let lab = Lab::start(1);
    let corrupt = lab.state_dir().join("mirror/corrupt");
    std::fs::write(&corrupt, "v1.30.8+k3s1/k3s\n").unwrap();
    let out = install(&lab, "lab-01", &[("INSTALL_K3S_VERSION", "v1.30.8+k3s1")]);
    std::fs::remove_file(&corrupt).unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Download sha256 does not match"),
        "{}",
        text(&out)
    );
    let left = lab.ssh("lab-01", "test -e /usr/local/bin/k3s");
    assert!(
        !left.status.success(),
        "corrupted binary must not be installed"
    );
    let log = std::fs::read_to_string(lab.state_dir().join("mirror/requests.log")).unwrap();
    let fetched = format!(
        "{} GET /k3s-io/k3s/releases/download/v1.30.8+k3s1/k3s 200",
        addr(&lab, "lab-01")
    );
    assert!(log.contains(&fetched), "mirror log lacks `{fetched}`");

    // Same install with the artifact intact works.
    let out = install(&lab, "lab-01", &[("INSTALL_K3S_VERSION", "v1.30.8+k3s1")]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        lab.ssh_ok("lab-01", "k3s --version")
            .starts_with("k3s version v1.30.8+k3s1")
    );
}

#[test]
fn fault_knobs_fail_install_crashloop_and_never_ready() {
    let lab = Lab::start(1);
    let host = "lab-01";
    lab.k3s_fault(host, "install-fail", "");
    let out = install(&lab, host, &[("INSTALL_K3S_VERSION", PINNED)]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("k3s-sim fault install-fail"),
        "{}",
        text(&out)
    );
    lab.k3s_fault_clear(host);

    lab.k3s_fault(host, "crashloop", "");
    lab.k3s_fault(host, "slow-install", "1");
    let out = install(&lab, host, &[("INSTALL_K3S_VERSION", PINNED)]);
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
    lab.k3s_fault_clear(host);

    // never-ready: the node registers and heartbeats but reports NotReady.
    lab.k3s_fault(host, "never-ready", "");
    lab.ssh_ok(
        host,
        "echo 0 | sudo tee /etc/k3s-sim/ready-delay >/dev/null",
    );
    lab.ssh_ok(host, "sudo systemctl restart k3s");
    let first = wait_until("node registered", Duration::from_secs(60), || {
        nodes(&lab, host)
            .into_iter()
            .find(|n| ready(n).0 == "False")
    });
    let later = wait_until("a later heartbeat", Duration::from_secs(60), || {
        nodes(&lab, host)
            .into_iter()
            .find(|n| ready(n).2 != ready(&first).2)
    });
    let (status, reason, _) = ready(&later);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "KubeletNotReady")
    );
    lab.k3s_fault_clear(host);
    wait_until(
        "Ready once the fault is cleared",
        Duration::from_secs(60),
        || nodes(&lab, host).into_iter().find(|n| ready(n).0 == "True"),
    );
}

#[test]
fn ha_servers_join_the_cluster_init_server_and_serve_agents() {
    let lab = Lab::start(3);
    let secret = "lab-shared-secret";
    let out = install(
        &lab,
        "lab-01",
        &[
            ("INSTALL_K3S_VERSION", PINNED),
            ("INSTALL_K3S_EXEC", "server --cluster-init"),
            ("K3S_TOKEN", secret),
        ],
    );
    assert!(out.status.success(), "first server:\n{}", text(&out));
    let first = format!("https://{}:6443", addr(&lab, "lab-01"));
    let out = install(
        &lab,
        "lab-02",
        &[
            ("INSTALL_K3S_VERSION", PINNED),
            ("INSTALL_K3S_EXEC", "server"),
            ("K3S_URL", &first),
            ("K3S_TOKEN", secret),
        ],
    );
    assert!(out.status.success(), "joining server:\n{}", text(&out));
    let read_token =
        |host: &str| lab.ssh_ok(host, "sudo cat /var/lib/rancher/k3s/server/node-token");
    let token = read_token("lab-01");
    assert!(
        token.ends_with(&format!("::server:{secret}")),
        "the given secret is the token's secret"
    );
    assert_eq!(
        read_token("lab-02"),
        token,
        "joined servers share the cluster CA, hence the token"
    );

    // An agent joins through the second server.
    let second = format!("https://{}:6443", addr(&lab, "lab-02"));
    let out = install(
        &lab,
        "lab-03",
        &[
            ("K3S_URL", &second),
            ("K3S_TOKEN", &token),
            ("INSTALL_K3S_VERSION", PINNED),
        ],
    );
    assert!(out.status.success(), "agent:\n{}", text(&out));

    let all = wait_until(
        "three Ready nodes seen from the second server",
        Duration::from_secs(120),
        || {
            let nodes = nodes(&lab, "lab-02");
            (nodes.len() == 3 && nodes.iter().all(|n| ready(n).0 == "True")).then_some(nodes)
        },
    );
    for n in &all {
        let name = n["metadata"]["name"].as_str().unwrap();
        let etcd = n["metadata"]["labels"]["node-role.kubernetes.io/etcd"] == "true";
        assert_eq!(etcd, name != "lab-03", "{name}: etcd role on servers only");
    }
}

fn main_pid(lab: &Lab, host: &str, unit: &str) -> String {
    lab.ssh_ok(host, &format!("systemctl show -p MainPID --value {unit}"))
}

#[test]
fn rerun_is_idempotent_and_a_new_version_upgrades_the_nodes() {
    let lab = Lab::options(2).arch("aarch64").start();
    let old = "v1.31.3+k3s1";
    let server = [("INSTALL_K3S_VERSION", old), ("K3S_KUBECONFIG_MODE", "644")];
    let out = install(&lab, "lab-01", &server);
    assert!(out.status.success(), "{}", text(&out));
    let token = lab.ssh_ok("lab-01", "sudo cat /var/lib/rancher/k3s/server/node-token");
    let url = format!("https://{}:6443", addr(&lab, "lab-01"));
    let agent = |version: &str| {
        install(
            &lab,
            "lab-02",
            &[
                ("K3S_URL", &url),
                ("K3S_TOKEN", &token),
                ("INSTALL_K3S_VERSION", version),
            ],
        )
    };
    let out = agent(old);
    assert!(out.status.success(), "{}", text(&out));
    let versions = |want: &str| {
        let nodes = nodes(&lab, "lab-01");
        (nodes.len() == 2
            && nodes
                .iter()
                .all(|n| ready(n).0 == "True" && n["status"]["nodeInfo"]["kubeletVersion"] == want))
        .then_some(nodes)
    };
    let before = wait_until(
        "two Ready nodes on the old version",
        Duration::from_secs(120),
        || versions(old),
    );
    assert!(
        before
            .iter()
            .all(|n| n["status"]["nodeInfo"]["architecture"] == "arm64")
    );
    // K3S_KUBECONFIG_MODE reaches the server: the login user reads the kubeconfig without sudo.
    let table = lab.ssh_ok("lab-01", "kubectl get nodes");
    assert!(table.contains(old), "{table}");

    // Same settings again: no restart.
    let pid = main_pid(&lab, "lab-01", "k3s");
    let out = install(&lab, "lab-01", &server);
    assert!(
        text(&out).contains("No change detected so skipping service start"),
        "{}",
        text(&out)
    );
    assert_eq!(main_pid(&lab, "lab-01", "k3s"), pid);

    // A new version restarts both services and the nodes report it.
    let out = install(
        &lab,
        "lab-01",
        &[
            ("INSTALL_K3S_VERSION", PINNED),
            ("K3S_KUBECONFIG_MODE", "644"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = agent(PINNED);
    assert!(out.status.success(), "{}", text(&out));
    wait_until(
        "both nodes on the new version",
        Duration::from_secs(120),
        || versions(PINNED),
    );
    assert!(
        lab.ssh_ok("lab-02", "k3s --version")
            .starts_with(&format!("k3s version {PINNED}"))
    );
}

#[test]
fn raspberry_pi_needs_the_memory_cgroup_flags_and_a_reboot() {
    let lab = Lab::options(1).pi(1).start();
    let host = "lab-01";
    // Tools also detect a Pi in /proc/cpuinfo, not only in the device tree.
    let cpuinfo = lab.ssh_ok(host, "cat /proc/cpuinfo");
    assert!(
        cpuinfo.contains("Model\t\t: Raspberry Pi 4 Model B")
            && cpuinfo.contains("Revision\t: d03115"),
        "{cpuinfo}"
    );
    let out = install(&lab, host, &[("INSTALL_K3S_VERSION", PINNED)]);
    assert!(
        !out.status.success(),
        "k3s must not start on a Pi without the memory cgroup:\n{}",
        text(&out)
    );
    let journal = lab.ssh_ok(host, "sudo journalctl -u k3s --no-pager");
    assert!(
        journal.contains("failed to find memory cgroup"),
        "{journal}"
    );

    lab.ssh_ok(
        host,
        "sudo sed -i '1 s/$/ cgroup_memory=1 cgroup_enable=memory/' /boot/firmware/cmdline.txt",
    );
    let before_reboot = lab.ssh(host, "sudo systemctl restart k3s");
    assert!(
        !before_reboot.status.success(),
        "the flags only count after a reboot"
    );

    let old = lab.boot_id(host);
    lab.reboot(host);
    lab.wait_for_new_boot(host, &old, Duration::from_secs(120));
    let node = wait_until(
        "the Pi node Ready after the reboot",
        Duration::from_secs(120),
        || nodes(&lab, host).into_iter().find(|n| ready(n).0 == "True"),
    );
    assert_eq!(node["status"]["nodeInfo"]["architecture"], "arm64");
    // k3s turned packet forwarding on at start, as real k3s does.
    let forwarding = lab.ssh_ok(
        host,
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding",
    );
    assert_eq!(
        forwarding.split_whitespace().collect::<Vec<_>>(),
        ["1", "1"]
    );
}
