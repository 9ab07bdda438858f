//! `edgeops up`, `plan`, `status` and `kubeconfig` against the lab (namespaced Debian hosts with
//! systemd and sshd, see scripts/lab) and the k3s simulator (docs/K3S-SIM.md). Needs root and
//! `scripts/lab`; fails with a clear reason when they are missing.
//!
//! All tests share one lab (its id allocated by `tests/support`) and use disjoint hosts, each
//! test its own cluster; the last test to finish tears the lab down. What "no change" means is checked
//! on the hosts (file inodes and mtimes, service start times), never only in the output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

const HOSTS: usize = 24;
const PINNED: &str = "v1.31.4+k3s1";

mod support;

use support::Edgeops;

/// The shared lab (from `tests/support`, which allocates a lab id no other test uses) and what
/// these tests need from it.
struct Lab {
    inner: support::Lab,
    addrs: HashMap<String, String>,
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Lab {
    fn knob(&self, args: &[&str]) {
        let out = self.inner.run_lab(args);
        assert!(
            out.status.success(),
            "scripts/lab {args:?}:\n{}",
            text(&out)
        );
    }

    fn start() -> Lab {
        // lab-01 and lab-02 look like Raspberry Pis (aarch64, a model, cmdline.txt without the
        // memory cgroup flags): `up` must enable the cgroup and reboot them before installing.
        let inner = support::Lab::options(HOSTS).pi(2).start();
        let addrs = inner
            .hosts()
            .iter()
            .map(|h| (h.name.clone(), h.address.clone()))
            .collect::<HashMap<_, _>>();
        assert!(addrs.len() >= HOSTS, "lab lists {} hosts", addrs.len());
        Lab { inner, addrs }
    }

    fn ssh(&self, host: &str, cmd: &str) -> Output {
        self.inner.ssh(host, cmd)
    }

    fn ssh_ok(&self, host: &str, cmd: &str) -> String {
        let out = self.ssh(host, cmd);
        assert!(out.status.success(), "{host}: `{cmd}`:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// An inventory for cluster `name`: the first host is the server (or the first `servers`
    /// hosts with HA), the rest agents.
    fn inventory(&self, dir: &Path, name: &str, hosts: &[&str], servers: usize) -> PathBuf {
        self.inventory_with(dir, name, hosts, servers, "")
    }

    /// Like `inventory`, with extra `[cluster]` lines.
    fn inventory_with(
        &self,
        dir: &Path,
        name: &str,
        hosts: &[&str],
        servers: usize,
        cluster_extra: &str,
    ) -> PathBuf {
        self.inner
            .inventory(name)
            .hosts(hosts)
            .servers(servers)
            .cluster(cluster_extra)
            .write(dir)
    }

    /// What "changed" would touch on a host: edgeops's files (inode + mtime), the k3s binary
    /// and unit files, and when the k3s service last started.
    fn footprint(&self, host: &str) -> String {
        self.ssh_ok(
            host,
            "sudo sh -c 'stat -c \"%n %i %y\" /etc/rancher/k3s/* /usr/local/bin/k3s \
             /etc/systemd/system/k3s*.service* 2>/dev/null; \
             systemctl show -p ActiveEnterTimestampMonotonic -p MainPID k3s k3s-agent 2>/dev/null'",
        )
    }

    fn node_token(&self, server: &str) -> String {
        self.ssh_ok(server, "sudo cat /var/lib/rancher/k3s/server/node-token")
            .trim()
            .to_string()
    }
}

static LAB: OnceLock<Lab> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());

/// The shared lab, started by the first test. Statics are never dropped, so the lab is torn
/// down by an exit handler when the test binary ends (however many tests a filter selected).
fn lab() -> &'static Lab {
    let _once = START.lock().unwrap_or_else(|e| e.into_inner());
    LAB.get_or_init(|| {
        let lab = Lab::start();
        if std::env::var_os("UP_LAB_KEEP").is_none() {
            // SAFETY: registers a plain `extern "C"` function; it only runs at process exit.
            unsafe { libc::atexit(teardown) };
        }
        lab
    })
}

extern "C" fn teardown() {
    if let Some(lab) = LAB.get() {
        lab.inner.down_at_exit();
    }
}

/// The remote commands a run's log records for `host`: one `facts` section per facts exec
/// (the first server's lock rides in it), one `TITLE: command` section per other exec.
fn commands_in_log(run_dir: &Path, host: &str) -> Vec<String> {
    let log = std::fs::read_to_string(run_dir.join(format!("{host}.log"))).unwrap_or_default();
    log.lines()
        .filter_map(|line| line.strip_prefix("==== "))
        .filter_map(|line| line.split_once(' ').map(|(_, title)| title))
        .filter(|title| *title == "facts" || title.ends_with(": command"))
        .map(str::to_owned)
        .collect()
}

/// The table line of `host` in `up`/`plan` output.
fn row<'a>(out: &'a str, host: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no line for {host} in:\n{out}"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn bare_to_ready_then_noop_then_join_one_agent() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    // lab-03 is the server; lab-01 and lab-02 are the Pi agents.
    let hosts = ["lab-03", "lab-01", "lab-02", "lab-04", "lab-05"];
    let inventory = lab.inventory(dir.path(), "five", &hosts, 1);
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();

    // Sample the process lists of the first server and one agent during the whole run (not
    // on the Pis: their reboot would end the sampler and its tmpfs log).
    let samplers: Vec<(&str, String)> = ["lab-03", "lab-04"]
        .into_iter()
        .map(|h| {
            let pid = lab.ssh_ok(
                h,
                "sudo sh -c 'nohup sh -c \"while :; do ps -eo args >>/tmp/ps-sample.log; sleep 0.05; done\" \
                 >/dev/null 2>&1 & echo $!'",
            );
            (h, pid.trim().to_string())
        })
        .collect();

    let boots: Vec<String> = ["lab-01", "lab-02"]
        .iter()
        .map(|h| lab.ssh_ok(h, "cat /proc/sys/kernel/random/boot_id"))
        .collect();
    let plan = edgeops.run(&["plan", inv]);
    let plan_bare = text(&plan);
    assert!(
        row(&plan_bare, "lab-01")
            .contains("enable the memory cgroup in /boot/firmware/cmdline.txt and reboot"),
        "{plan_bare}"
    );
    let runs_before = edgeops.run_dirs();
    let first = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out1 = text(&first);
    assert!(first.status.success(), "up failed:\n{out1}");
    // A bare agent: facts, install. (The first server's count depends on how many node polls
    // verify needs, so it is only checked on the re-run below.)
    let bare_run = edgeops.new_run_dir(&runs_before);
    let agent = commands_in_log(&bare_run, "lab-04");
    assert_eq!(agent.len(), 2, "bare agent lab-04 ran {agent:?}");
    lab.ssh_ok("lab-03", "test ! -e /run/edgeops-up.lock");
    // The Pis got the cgroup flags on their single cmdline.txt line and were rebooted; the
    // other hosts were not.
    for (host, boot) in ["lab-01", "lab-02"].iter().zip(&boots) {
        let cmdline = lab.ssh_ok(host, "cat /boot/firmware/cmdline.txt");
        assert_eq!(cmdline.lines().count(), 1, "{cmdline}");
        assert!(
            cmdline.contains(" cgroup_memory=1 cgroup_enable=memory"),
            "{cmdline}"
        );
        assert_ne!(
            &lab.ssh_ok(host, "cat /proc/sys/kernel/random/boot_id"),
            boot,
            "{host} not rebooted"
        );
        assert!(row(&out1, host).contains("arm64"), "{out1}");
    }
    for host in hosts {
        let line = row(&out1, host);
        assert!(line.contains("installed"), "{line}");
        assert!(line.contains(PINNED), "{line}");
    }
    // Every node Ready at the pinned version, as the cluster itself reports.
    let nodes: serde_json::Value =
        serde_json::from_str(&lab.ssh_ok("lab-03", "sudo k3s kubectl get nodes -o json")).unwrap();
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for node in items {
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], PINNED);
        let ready = node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True", "{node}");
    }
    // The kubeconfig was merged under the cluster's name, 0600, pointing at the server.
    let kubeconfig = edgeops.home().join(".kube/config");
    let text_kc = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(text_kc.contains("name: five"), "{text_kc}");
    assert!(text_kc.contains(&format!("https://{}:6443", lab.addrs["lab-03"])));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Re-run: nothing to do, and nothing on the hosts changed.
    let before: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    let runs_before = edgeops.run_dirs();
    let second = edgeops.run(&["up", inv]);
    let out2 = text(&second);
    assert!(second.status.success(), "re-run failed:\n{out2}");
    // Round trips of a re-run, from its log: the first server takes the lock with its facts
    // and reads the API and the nodes while releasing it; an agent only gathers facts.
    let rerun = edgeops.new_run_dir(&runs_before);
    let server = commands_in_log(&rerun, "lab-03");
    assert_eq!(
        server,
        ["facts", "wait for the API: command"],
        "re-run commands on the first server lab-03"
    );
    for agent in ["lab-01", "lab-04"] {
        assert_eq!(
            commands_in_log(&rerun, agent),
            ["facts"],
            "re-run commands on agent {agent}"
        );
    }
    lab.ssh_ok("lab-03", "test ! -e /run/edgeops-up.lock");
    for host in hosts {
        assert!(row(&out2, host).contains("nothing to do"), "{out2}");
    }
    let after: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    assert_eq!(
        before, after,
        "a no-op re-run changed files or restarted services"
    );

    // Plan on the converged cluster: nothing to do anywhere.
    let plan = edgeops.run(&["plan", inv]);
    let plan_out = text(&plan);
    assert!(plan.status.success(), "{plan_out}");
    for host in hosts {
        assert!(row(&plan_out, host).contains("nothing to do"), "{plan_out}");
    }

    // The join token never shows: not in output, not in the run logs, not in `ps` on hosts.
    for (host, pid) in &samplers {
        lab.ssh_ok(host, &format!("sudo kill {pid}"));
    }
    let token = lab.node_token("lab-03");
    let secret = token.rsplit(':').next().unwrap().to_string();
    assert!(secret.len() >= 16, "unexpected token shape");
    let logs = edgeops.logs();
    assert!(logs.contains("installed"), "run logs are missing:\n{logs}");
    for (what, haystack) in [
        ("output", format!("{out1}{out2}{plan_out}")),
        ("logs", logs),
    ] {
        assert!(
            !haystack.contains(&secret),
            "the join token appears in the {what}"
        );
    }
    for (host, _) in &samplers {
        let samples = lab.ssh_ok(host, "sudo cat /tmp/ps-sample.log");
        assert!(
            samples.contains("sh -c"),
            "{host}: the ps sampler recorded nothing"
        );
        assert!(
            !samples.contains(&secret),
            "{host}: the join token appears in ps"
        );
    }

    // A new agent joins; the others are not touched.
    let hosts6 = ["lab-03", "lab-01", "lab-02", "lab-04", "lab-05", "lab-06"];
    let inventory6 = lab.inventory(dir.path(), "five", &hosts6, 1);
    let third = edgeops.run(&["up", inventory6.to_str().unwrap(), "--ready-timeout", "90s"]);
    let out3 = text(&third);
    assert!(third.status.success(), "join failed:\n{out3}");
    assert!(row(&out3, "lab-06").contains("installed"), "{out3}");
    for host in hosts {
        assert!(row(&out3, host).contains("nothing to do"), "{out3}");
    }
    let after_join: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    assert_eq!(before, after_join, "joining lab-06 touched the other hosts");

    // status: facts and the node table, six Ready nodes.
    let status = edgeops.run(&["status", inventory6.to_str().unwrap()]);
    let status_out = stdout(&status);
    assert!(status.status.success(), "{}", text(&status));
    assert_eq!(
        status_out
            .lines()
            .filter(|l| l.starts_with("lab-0") && l.contains(" Ready "))
            .count(),
        6,
        "{status_out}"
    );
    // status reads the first server's facts and nodes in one exec, an agent's facts in one.
    let json = edgeops.run(&["status", inventory6.to_str().unwrap(), "-o", "json"]);
    assert!(json.status.success(), "{}", text(&json));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status JSON");
    let commands = |host: &str| {
        report["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == host)
            .map(|h| h["commands"].clone())
    };
    assert_eq!(commands("lab-03"), Some(1.into()), "{report}");
    assert_eq!(commands("lab-06"), Some(1.into()), "{report}");
}

#[test]
fn plan_on_bare_hosts_changes_nothing() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-07", "lab-08"];
    let inventory = lab.inventory(dir.path(), "planned", &hosts, 1);
    let before: Vec<String> = hosts
        .iter()
        .map(|h| lab.ssh_ok(h, "sudo ls -la --time-style=full-iso /etc /usr/local/bin"))
        .collect();
    let edgeops = Edgeops::new();
    let plan = edgeops.run(&["plan", inventory.to_str().unwrap()]);
    let out = text(&plan);
    assert!(plan.status.success(), "{out}");
    assert!(row(&out, "lab-07").contains("would install"), "{out}");
    assert!(row(&out, "lab-07").contains("as server"), "{out}");
    assert!(row(&out, "lab-08").contains("as agent"), "{out}");
    assert!(out.contains(&format!("k3s {PINNED}")), "{out}");
    let dry = edgeops.run(&["up", "--dry-run", inventory.to_str().unwrap()]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(row(&stdout(&dry), "lab-08").contains("would install"));
    let after: Vec<String> = hosts
        .iter()
        .map(|h| lab.ssh_ok(h, "sudo ls -la --time-style=full-iso /etc /usr/local/bin"))
        .collect();
    assert_eq!(before, after, "plan changed files on the hosts");
    for host in hosts {
        lab.ssh_ok(
            host,
            "test ! -e /etc/rancher && test ! -e /usr/local/bin/k3s",
        );
    }
    assert!(
        !edgeops.home().join(".kube/config").exists(),
        "plan wrote a kubeconfig"
    );
}

#[test]
fn failing_agents_are_reported_while_the_rest_comes_up() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    // lab-10: install fails; lab-11: never Ready; lab-12: unreachable; lab-13: fine.
    lab.knob(&["k3s-fault", "lab-10", "install-fail"]);
    lab.knob(&["k3s-fault", "lab-11", "never-ready"]);
    lab.knob(&["stop", "lab-12"]);
    let hosts = ["lab-09", "lab-10", "lab-11", "lab-12", "lab-13"];
    let inventory = lab.inventory(dir.path(), "faulty", &hosts, 1);
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();
    let run = edgeops.run(&["up", inv, "--ready-timeout", "20s"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(row(&out, "lab-09").contains("installed"), "{out}");
    assert!(row(&out, "lab-13").contains("installed"), "{out}");
    let failed = row(&out, "lab-10");
    assert!(
        failed.contains("failed") && failed.contains("install-fail"),
        "{failed}"
    );
    let never = row(&out, "lab-11");
    assert!(
        never.contains("failed") && never.contains("not Ready"),
        "{never}"
    );
    let gone = row(&out, "lab-12");
    assert!(
        gone.contains("failed") && gone.contains("unreachable"),
        "{gone}"
    );

    // The failed host is retried next run; the good ones are left alone.
    lab.knob(&["k3s-fault", "lab-10", "--clear"]);
    lab.knob(&["k3s-fault", "lab-11", "--clear"]);
    lab.knob(&["start", "lab-12"]);
    let again = edgeops.run(&["up", inv, "--ready-timeout", "60s"]);
    let out = text(&again);
    assert!(row(&out, "lab-10").contains("installed"), "{out}");
    assert!(row(&out, "lab-12").contains("installed"), "{out}");
    assert!(row(&out, "lab-13").contains("nothing to do"), "{out}");
}

#[test]
fn dead_first_server_stops_dependent_phases() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    lab.knob(&["stop", "lab-14"]);
    let hosts = ["lab-14", "lab-15"];
    let inventory = lab.inventory(dir.path(), "headless", &hosts, 1);
    let edgeops = Edgeops::new();
    let run = edgeops.run(&["up", inventory.to_str().unwrap()]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(row(&out, "lab-14").contains("unreachable"), "{out}");
    let skipped = row(&out, "lab-15");
    assert!(
        skipped.contains("skipped") && skipped.contains("first server lab-14 failed"),
        "{skipped}"
    );
    assert!(
        out.contains(
            "first server lab-14 failed: skipping the other servers, agents, kubeconfig and verify"
        ),
        "{out}"
    );
    lab.ssh_ok("lab-15", "test ! -e /usr/local/bin/k3s");
    lab.knob(&["start", "lab-14"]);
}

#[test]
fn a_second_up_refuses_while_the_first_holds_the_lock() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-16", "lab-17"];
    let inventory = lab.inventory(dir.path(), "locked", &hosts, 1);
    let inv = inventory.to_str().unwrap().to_string();
    // Keep the first run busy on the agent's install.
    lab.knob(&["k3s-fault", "lab-17", "slow-install", "6"]);
    let first_home = Edgeops::new();
    let first = first_home
        .command(&["up", &inv, "--ready-timeout", "60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first run holds the lock (the test waits for a state, not a duration).
    let mut held = false;
    for _ in 0..300 {
        if lab
            .ssh("lab-16", "test -e /run/edgeops-up.lock")
            .status
            .success()
        {
            held = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(held, "the first run never took the lock");
    let second = Edgeops::new().run(&["up", &inv]);
    let out2 = text(&second);
    assert_eq!(second.status.code(), Some(1), "{out2}");
    assert!(
        out2.contains("cluster locked is locked by another edgeops run"),
        "{out2}"
    );
    assert!(
        out2.contains(" run "),
        "the message names the holder: {out2}"
    );
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "first run:\n{}", text(&first));
    lab.ssh_ok("lab-16", "test ! -e /run/edgeops-up.lock");
    lab.knob(&["k3s-fault", "lab-17", "--clear"]);

    // A stale lock (its run died long ago) is taken over, and said so.
    lab.ssh_ok(
        "lab-16",
        "echo \"$(( $(date +%s) - 7200 )) ghost@nowhere pid 1 run dead\" | sudo tee /run/edgeops-up.lock >/dev/null",
    );
    let third = Edgeops::new().run(&["up", &inv]);
    let out3 = text(&third);
    assert!(third.status.success(), "{out3}");
    assert!(out3.contains("took over a stale lock"), "{out3}");
    assert!(out3.contains("ghost@nowhere"), "{out3}");

    // Ctrl-C while an agent installs: the run stops and still gives the lock back.
    let hosts3 = ["lab-16", "lab-17", "lab-24"];
    let inventory3 = lab.inventory(dir.path(), "locked", &hosts3, 1);
    lab.knob(&["k3s-fault", "lab-24", "slow-install", "45"]);
    let home = Edgeops::new();
    let interrupted = home
        .command(&["up", inventory3.to_str().unwrap(), "--ready-timeout", "60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut installing = false;
    for _ in 0..600 {
        if lab.ssh("lab-24", "pgrep -fx 'sleep 45'").status.success() {
            installing = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(installing, "lab-24's install never started");
    lab.ssh_ok("lab-16", "test -e /run/edgeops-up.lock");
    let sent = Command::new("kill")
        .args(["-INT", &interrupted.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let interrupted = interrupted.wait_with_output().unwrap();
    let out4 = text(&interrupted);
    assert!(!interrupted.status.success(), "{out4}");
    assert!(out4.contains("interrupted"), "{out4}");
    assert!(
        lab.ssh("lab-16", "test ! -e /run/edgeops-up.lock")
            .status
            .success(),
        "the lock outlived the interrupted run:\n{out4}"
    );
    lab.knob(&["k3s-fault", "lab-24", "--clear"]);
}

#[test]
fn kubeconfig_command_merges_under_the_cluster_context() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-18"];
    let inventory = lab.inventory(dir.path(), "solo", &hosts, 1);
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();
    let up = edgeops.run(&["up", inv, "--ready-timeout", "60s"]);
    assert!(up.status.success(), "{}", text(&up));
    // A user kubeconfig with another context survives the merge.
    let target = dir.path().join("merged.yaml");
    std::fs::write(
        &target,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://other:6443\n\
         contexts:\n- name: other\n  context:\n    cluster: other\n    user: other\n\
         users:\n- name: other\n  user:\n    token: x\ncurrent-context: other\n",
    )
    .unwrap();
    let out = edgeops.run(&["kubeconfig", inv, "--merge-into", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let merged = std::fs::read_to_string(&target).unwrap();
    assert!(merged.contains("name: other"), "{merged}");
    assert!(merged.contains("name: solo"), "{merged}");
    assert!(merged.contains("current-context: solo"), "{merged}");
    assert!(
        merged.contains(&format!("https://{}:6443", lab.addrs["lab-18"])),
        "{merged}"
    );
}

#[test]
fn ha_three_servers_two_agents() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-19", "lab-20", "lab-21", "lab-22", "lab-23"];
    let inventory = lab.inventory(dir.path(), "ha", &hosts, 3);
    let edgeops = Edgeops::new();
    let up = edgeops.run(&["up", inventory.to_str().unwrap(), "--ready-timeout", "90s"]);
    let out = text(&up);
    assert!(up.status.success(), "{out}");
    for host in hosts {
        assert!(row(&out, host).contains("installed"), "{out}");
    }
    let nodes = lab.ssh_ok("lab-19", "sudo k3s kubectl get nodes -o json");
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    let etcd = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["metadata"]["labels"]["node-role.kubernetes.io/etcd"] == "true")
        .count();
    assert_eq!(etcd, 3, "three etcd members: {nodes}");
    let again = edgeops.run(&["up", inventory.to_str().unwrap()]);
    let out = text(&again);
    for host in hosts {
        assert!(row(&out, host).contains("nothing to do"), "{out}");
    }

    // A changed agent setting rewrites the agents' config and restarts only them.
    let servers_before: Vec<String> = hosts[..3].iter().map(|h| lab.footprint(h)).collect();
    let agents_before: Vec<String> = hosts[3..].iter().map(|h| lab.footprint(h)).collect();
    let changed = lab.inventory_with(
        dir.path(),
        "ha",
        &hosts,
        3,
        "agent_args = [\"--kubelet-arg=max-pods=50\"]\n",
    );
    let reconf = edgeops.run(&["up", changed.to_str().unwrap(), "--ready-timeout", "90s"]);
    let out = text(&reconf);
    assert!(reconf.status.success(), "{out}");
    for host in &hosts[..3] {
        assert!(row(&out, host).contains("nothing to do"), "{out}");
    }
    for (host, before) in hosts[3..].iter().zip(&agents_before) {
        // config.yaml may hold secrets: 0600 root, so read it as root.
        assert!(row(&out, host).contains("reconfigured"), "{out}");
        let config = lab.ssh_ok(
            host,
            "sudo stat -c %a /etc/rancher/k3s/config.yaml && sudo cat /etc/rancher/k3s/config.yaml",
        );
        assert!(
            config.starts_with("600\n") && config.contains("max-pods=50"),
            "{config}"
        );
        let after = lab.footprint(host);
        let started = |f: &str| {
            f.lines()
                .filter(|l| l.starts_with("ActiveEnterTimestampMonotonic="))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_ne!(started(before), started(&after), "{host} was not restarted");
    }
    let servers_after: Vec<String> = hosts[..3].iter().map(|h| lab.footprint(h)).collect();
    assert_eq!(servers_before, servers_after, "the servers were touched");
}
