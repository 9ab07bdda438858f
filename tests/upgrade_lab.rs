//! `edgeops upgrade` (and `up` with a raised pinned version) against the lab and the k3s
//! simulator's mirror (v1.30.8, v1.31.3, v1.31.4, v1.32.0; `latest` → v1.32.0). Needs root and
//! `scripts/lab`, like tests/up_lab.rs.
//!
//! All tests share one lab (its id allocated by `tests/support`) on disjoint hosts, each test its
//! own cluster. The rolling order is observed on the hosts, not in the output: systemd's
//! realtime timestamps (µs) of when each k3s service stopped for the upgrade and when it was
//! active again (all lab hosts share one clock), so "one at a time" means a server's restart
//! window ends before the next one's begins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};

mod support;

use support::Edgeops;

const HOSTS: usize = 15;
const V130: &str = "v1.30.8+k3s1";
const V1313: &str = "v1.31.3+k3s1";
const V131: &str = "v1.31.4+k3s1";
const V132: &str = "v1.32.0+k3s1";

struct Lab {
    inner: support::Lab,
}

static LAB: OnceLock<Lab> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());

/// The shared lab, started by the first test and torn down at process exit.
fn lab() -> &'static Lab {
    let _once = START.lock().unwrap_or_else(|e| e.into_inner());
    LAB.get_or_init(|| {
        // A loaded machine can miss the lab's start deadline once; the failed lab is torn
        // down by its Drop, and a second start usually makes it.
        let inner = std::panic::catch_unwind(|| support::Lab::options(HOSTS).start())
            .unwrap_or_else(|_| support::Lab::options(HOSTS).start());
        if std::env::var_os("UPGRADE_LAB_KEEP").is_none() {
            // SAFETY: registers a plain `extern "C"` function; it only runs at process exit.
            unsafe { libc::atexit(teardown) };
        }
        Lab { inner }
    })
}

extern "C" fn teardown() {
    if let Some(lab) = LAB.get() {
        lab.inner.down_at_exit();
    }
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

    fn ssh_ok(&self, host: &str, cmd: &str) -> String {
        let out = self.inner.ssh(host, cmd);
        assert!(out.status.success(), "{host}: `{cmd}`:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// An inventory pinned to `version`: the first `servers` hosts are servers (HA when more
    /// than one), the rest agents.
    fn inventory(
        &self,
        dir: &Path,
        name: &str,
        hosts: &[&str],
        servers: usize,
        version: &str,
    ) -> PathBuf {
        self.inventory_with(dir, name, hosts, servers, version, "")
    }

    /// Like `inventory`, with extra `[cluster]` lines.
    fn inventory_with(
        &self,
        dir: &Path,
        name: &str,
        hosts: &[&str],
        servers: usize,
        version: &str,
        cluster_extra: &str,
    ) -> PathBuf {
        self.inner
            .inventory(name)
            .hosts(hosts)
            .servers(servers)
            .version(version)
            .cluster(cluster_extra)
            .file_name(&format!("{name}-{version}.toml"))
            .write(dir)
    }

    /// The nodes as the cluster reports them (on `server`): name → (kubeletVersion, Ready,
    /// unschedulable).
    fn nodes(&self, server: &str) -> HashMap<String, (String, String, bool)> {
        let json = self.ssh_ok(server, "sudo k3s kubectl get nodes -o json");
        let nodes: serde_json::Value = serde_json::from_str(&json).unwrap();
        nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let ready = n["status"]["conditions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["type"] == "Ready")
                    .map(|c| c["status"].as_str().unwrap_or("").to_owned())
                    .unwrap_or_default();
                (
                    n["metadata"]["name"].as_str().unwrap().to_owned(),
                    (
                        n["status"]["nodeInfo"]["kubeletVersion"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                        ready,
                        n["spec"]["unschedulable"].as_bool().unwrap_or(false),
                    ),
                )
            })
            .collect()
    }

    /// When the host's k3s service last stopped and last became active (systemd realtime,
    /// `YYYY-MM-DD HH:MM:SS.uuuuuu`, so strings compare in time order).
    fn restart_window(&self, host: &str, unit: &str) -> (String, String) {
        let out = self.ssh_ok(
            host,
            &format!(
                "systemctl show --timestamp=us+utc -p InactiveEnterTimestamp -p ActiveEnterTimestamp {unit}"
            ),
        );
        let get = |key: &str| {
            let value = out
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{host}: no {key} in {out}"));
            // "Fri 2026-11-27 14:05:22.123456 UTC" -> without the weekday.
            value
                .split_once(' ')
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or_default()
        };
        (get("InactiveEnterTimestamp"), get("ActiveEnterTimestamp"))
    }

    /// What an upgrade would change: the binary (inode, mtime), the unit files and the
    /// service's start time.
    fn footprint(&self, host: &str) -> String {
        self.ssh_ok(
            host,
            "sudo sh -c 'stat -c \"%n %i %y\" /usr/local/bin/k3s /etc/rancher/k3s/* \
             /etc/systemd/system/k3s*.service* 2>/dev/null; \
             systemctl show -p ActiveEnterTimestampMonotonic -p MainPID k3s k3s-agent 2>/dev/null'",
        )
    }
}

/// The table line of `host`.
fn row<'a>(out: &'a str, host: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no line for {host} in:\n{out}"))
}

/// Each window (stop, active again) ends before the next one starts.
fn assert_one_at_a_time(windows: &[(&str, (String, String))]) {
    for pair in windows.windows(2) {
        let (a, (_, a_up)) = &pair[0];
        let (b, (b_down, _)) = &pair[1];
        assert!(
            a_up < b_down,
            "{a} was active again at {a_up}, but {b} already stopped at {b_down}: {windows:?}"
        );
    }
}

#[test]
fn ha_cluster_rolls_across_minors_then_to_a_channel_and_refuses_a_downgrade() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let servers = ["lab-01", "lab-02", "lab-03"];
    let agents = ["lab-04", "lab-05"];
    let hosts = ["lab-01", "lab-02", "lab-03", "lab-04", "lab-05"];
    let inventory = lab.inventory(dir.path(), "roll", &hosts, 3, V130);
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();
    edgeops.ok(&["up", inv, "--ready-timeout", "120s"]);
    assert!(lab.nodes("lab-01").values().all(|(v, _, _)| v == V130));

    // --dry-run: the plan (from -> to, the servers' order, the agents' batches) and nothing
    // changed on any host, not even the lock.
    let before: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    let plan = edgeops.ok(&[
        "upgrade",
        inv,
        "--version",
        V131,
        "--batch-size",
        "1",
        "--dry-run",
    ]);
    assert!(plan.contains("dry run: nothing was changed"), "{plan}");
    assert!(
        row(&plan, "lab-01").contains(&format!(
            "would upgrade {V130} -> {V131} (server 1 of 3, one at a time)"
        )),
        "{plan}"
    );
    assert!(row(&plan, "lab-03").contains("(server 3 of 3"), "{plan}");
    assert!(
        row(&plan, "lab-05").contains("(agents batch 2 of 2)"),
        "{plan}"
    );
    assert!(plan.contains("5 host(s): 5 would upgrade"), "{plan}");
    let after: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    assert_eq!(before, after, "a dry run changed the hosts");
    assert_eq!(
        lab.ssh_ok(
            "lab-01",
            "sudo sh -c 'test -e /run/edgeops-up.lock && echo held || echo free'"
        )
        .trim(),
        "free"
    );
    assert!(lab.nodes("lab-01").values().all(|(v, _, _)| v == V130));

    // v1.30 -> v1.31, drained, agents one at a time.
    let out = edgeops.ok(&[
        "upgrade",
        inv,
        "--version",
        V131,
        "--drain",
        "--batch-size",
        "1",
        "--ready-timeout",
        "120s",
    ]);
    for host in hosts {
        let line = row(&out, host);
        assert!(
            line.contains("upgraded") && line.contains(V130) && line.contains(V131),
            "{line}"
        );
    }
    assert!(out.contains(&format!("set it to \"{V131}\"")), "{out}");
    let nodes = lab.nodes("lab-01");
    assert_eq!(nodes.len(), 5, "{nodes:?}");
    for (name, (version, ready, cordoned)) in &nodes {
        assert_eq!(version, V131, "{name}");
        assert_eq!(ready, "True", "{name}");
        assert!(!cordoned, "{name} was left cordoned");
    }
    // On the hosts: servers one at a time in inventory order, then the agents one at a time.
    let mut windows: Vec<(&str, (String, String))> = servers
        .iter()
        .map(|h| (*h, lab.restart_window(h, "k3s")))
        .collect();
    windows.extend(
        agents
            .iter()
            .map(|h| (*h, lab.restart_window(h, "k3s-agent"))),
    );
    assert_one_at_a_time(&windows);
    for host in hosts {
        assert!(
            lab.ssh_ok(host, "k3s --version").contains(V131),
            "{host} binary"
        );
    }

    // --channel latest resolves to the channel's newest release (v1.32.0, not stable's).
    let out = edgeops.ok(&["upgrade", inv, "--channel", "latest"]);
    assert!(
        out.contains(&format!("upgrade to k3s {V132} (channel latest")),
        "{out}"
    );
    for host in hosts {
        let line = row(&out, host);
        assert!(line.contains("upgraded") && line.contains(V132), "{line}");
    }
    let nodes = lab.nodes("lab-01");
    assert!(
        nodes.values().all(|(v, r, _)| v == V132 && r == "True"),
        "{nodes:?}"
    );
    let windows: Vec<(&str, (String, String))> = servers
        .iter()
        .map(|h| (*h, lab.restart_window(h, "k3s")))
        .collect();
    assert_one_at_a_time(&windows);
    let last_server_up = windows.iter().map(|(_, (_, up))| up.clone()).max().unwrap();
    for agent in agents {
        let (down, _) = lab.restart_window(agent, "k3s-agent");
        assert!(
            last_server_up < down,
            "{agent} stopped at {down}, before the last server was back ({last_server_up})"
        );
    }

    // Going back is refused without --force: exit 2, the hosts and versions named, nothing touched.
    let before: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    let refused = edgeops.run(&["upgrade", inv, "--version", V131]);
    let all = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{all}");
    assert!(
        all.contains(&format!("refusing to downgrade to {V131}")),
        "{all}"
    );
    assert!(all.contains(&format!("lab-01 runs {V132}")), "{all}");
    assert!(all.contains("--force"), "{all}");
    let after: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    assert_eq!(before, after, "a refused downgrade changed the hosts");
    lab.ssh_ok("lab-01", "test ! -e /run/edgeops-up.lock");

    // Already there: nothing to do, nothing touched.
    let out = edgeops.ok(&["upgrade", inv, "--version", V132]);
    for host in hosts {
        assert!(
            row(&out, host).contains(&format!("already at {V132}")),
            "{out}"
        );
    }
    let after: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    assert_eq!(before, after, "a no-op upgrade changed the hosts");
}

#[test]
fn a_failing_agent_is_reported_while_the_other_agents_upgrade() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-06", "lab-07", "lab-08", "lab-09"];
    let inventory = lab.inventory(dir.path(), "faulty", &hosts, 1, V1313);
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();
    edgeops.ok(&["up", inv, "--ready-timeout", "120s"]);

    // The cluster lock of `up` is honoured: a held lock refuses, naming its holder.
    lab.ssh_ok(
        "lab-06",
        "echo \"$(date +%s) alice@ws pid 7 run feed\" | sudo tee /run/edgeops-up.lock >/dev/null",
    );
    let locked = edgeops.run(&["upgrade", inv, "--version", V131]);
    let all = text(&locked);
    assert_eq!(locked.status.code(), Some(1), "{all}");
    assert!(
        all.contains("cluster faulty is locked") && all.contains("alice@ws pid 7 run feed"),
        "{all}"
    );
    lab.ssh_ok("lab-06", "sudo rm /run/edgeops-up.lock");
    assert!(lab.nodes("lab-06").values().all(|(v, _, _)| v == V1313));

    // lab-08's installer fails (after replacing the binary, before the unit).
    lab.knob(&["k3s-fault", "lab-08", "install-fail"]);
    let run = edgeops.run(&[
        "upgrade",
        inv,
        "--version",
        V131,
        "--batch-size",
        "2",
        "--drain",
        "--ready-timeout",
        "90s",
    ]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    let failed = row(&out, "lab-08");
    assert!(
        failed.contains("failed") && failed.contains("install-fail"),
        "{failed}"
    );
    assert!(failed.contains("left cordoned"), "{failed}");
    // The kind of the failure: the installer exited 1.
    assert!(failed.contains("failed (exit 1)"), "{failed}");
    for host in ["lab-06", "lab-07", "lab-09"] {
        assert!(row(&out, host).contains("upgraded"), "{out}");
    }
    let nodes = lab.nodes("lab-06");
    for host in ["lab-06", "lab-07", "lab-09"] {
        assert_eq!(nodes[host].0, V131, "{host}: {nodes:?}");
        assert!(!nodes[host].2, "{host} left cordoned");
    }
    assert_eq!(nodes["lab-08"].0, V1313, "{nodes:?}");
    assert!(nodes["lab-08"].2, "the failed node stays cordoned");

    // Fixed: the next run finishes lab-08 (its binary is new, its node is not) and leaves the
    // others alone.
    lab.knob(&["k3s-fault", "lab-08", "--clear"]);
    let before: Vec<String> = ["lab-06", "lab-07", "lab-09"]
        .iter()
        .map(|h| lab.footprint(h))
        .collect();
    let out = edgeops.ok(&[
        "upgrade",
        inv,
        "--version",
        V131,
        "--drain",
        "--ready-timeout",
        "90s",
    ]);
    assert!(row(&out, "lab-08").contains("upgraded"), "{out}");
    assert!(row(&out, "lab-07").contains("already at"), "{out}");
    let after: Vec<String> = ["lab-06", "lab-07", "lab-09"]
        .iter()
        .map(|h| lab.footprint(h))
        .collect();
    assert_eq!(before, after, "the finished hosts were touched again");
    let nodes = lab.nodes("lab-06");
    assert_eq!(nodes["lab-08"].0, V131);
    assert!(!nodes["lab-08"].2, "uncordoned once upgraded");

    // -o json: the same report as a document.
    let json = edgeops.run(&["upgrade", inv, "--version", V131, "-o", "json"]);
    assert!(json.status.success(), "{}", text(&json));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["target"], V131);
    let hosts = report["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 4);
    assert!(
        hosts
            .iter()
            .all(|h| h["status"] == "unchanged" && h["from"] == V131 && h["to"] == V131),
        "{report}"
    );

    // Agents alone never overtake the server (--limit left it out): refused, exit 2.
    let skew = edgeops.run(&["upgrade", inv, "--limit", "agents", "--version", V132]);
    let all = text(&skew);
    assert_eq!(skew.status.code(), Some(2), "{all}");
    assert!(all.contains(&format!("server lab-06 ({V131})")), "{all}");
    assert!(lab.nodes("lab-06").values().all(|(v, _, _)| v == V131));
}

#[test]
fn raising_the_pinned_version_makes_up_upgrade_servers_one_at_a_time() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let servers = ["lab-10", "lab-11", "lab-12"];
    let hosts = ["lab-10", "lab-11", "lab-12", "lab-13"];
    let old = lab.inventory(dir.path(), "pinned", &hosts, 3, V1313);
    let edgeops = Edgeops::new();
    edgeops.ok(&["up", old.to_str().unwrap(), "--ready-timeout", "120s"]);

    let new = lab.inventory(dir.path(), "pinned", &hosts, 3, V131);
    let plan = edgeops.ok(&["plan", new.to_str().unwrap()]);
    assert!(row(&plan, "lab-11").contains("would upgrade"), "{plan}");
    // The agent's installer fails after replacing the binary: it is reported, the servers are
    // upgraded.
    lab.knob(&["k3s-fault", "lab-13", "install-fail"]);
    let run = edgeops.run(&["up", new.to_str().unwrap(), "--ready-timeout", "60s"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    for host in servers {
        let line = row(&out, host);
        assert!(line.contains("upgraded") && line.contains(V131), "{line}");
    }
    assert!(row(&out, "lab-13").contains("install-fail"), "{out}");
    let windows: Vec<(&str, (String, String))> = servers
        .iter()
        .map(|h| (*h, lab.restart_window(h, "k3s")))
        .collect();
    assert_one_at_a_time(&windows);
    // Fixed, the next `up` finishes it: the binary is already new, the service still ran the
    // old one and is restarted.
    lab.knob(&["k3s-fault", "lab-13", "--clear"]);
    let out = edgeops.ok(&["up", new.to_str().unwrap(), "--ready-timeout", "120s"]);
    assert!(row(&out, "lab-13").contains("reconfigured"), "{out}");
    for host in servers {
        assert!(row(&out, host).contains("nothing to do"), "{out}");
    }
    let nodes = lab.nodes("lab-10");
    assert!(
        nodes.values().all(|(v, r, _)| v == V131 && r == "True"),
        "{nodes:?}"
    );
    let out = edgeops.ok(&["up", new.to_str().unwrap()]);
    for host in hosts {
        assert!(row(&out, host).contains("nothing to do"), "{out}");
    }
    // `up` never goes back: the old pin is refused with the way to do it.
    let back = edgeops.run(&["up", old.to_str().unwrap()]);
    let all = text(&back);
    assert_eq!(back.status.code(), Some(1), "{all}");
    assert!(all.contains("never downgrades"), "{all}");

    // `upgrade` stops at the first failed server: the later server and the agent are skipped,
    // saying why, and stay on their version.
    lab.knob(&["k3s-fault", "lab-11", "install-fail"]);
    let run = edgeops.run(&["upgrade", new.to_str().unwrap(), "--version", V132]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(row(&out, "lab-10").contains("upgraded"), "{out}");
    let failed = row(&out, "lab-11");
    assert!(
        failed.contains("failed") && failed.contains("install-fail"),
        "{failed}"
    );
    for host in ["lab-12", "lab-13"] {
        let line = row(&out, host);
        assert!(
            line.contains("skipped") && line.contains("server lab-11 failed"),
            "{line}"
        );
    }
    let nodes = lab.nodes("lab-10");
    assert_eq!(nodes["lab-10"].0, V132, "{nodes:?}");
    for host in ["lab-11", "lab-12", "lab-13"] {
        assert_eq!(nodes[host].0, V131, "{host}: {nodes:?}");
    }
    lab.knob(&["k3s-fault", "lab-11", "--clear"]);
}

#[test]
fn an_air_gapped_cluster_upgrades_from_the_workstation_cache() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-14", "lab-15"];
    // The hosts cannot reach the mirror: every file comes from the workstation.
    for host in hosts {
        lab.knob(&["mirror-cut", host]);
    }
    let inventory = lab.inventory_with(dir.path(), "dark", &hosts, 1, V1313, "airgap = true");
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();
    edgeops.ok(&["up", inv, "--ready-timeout", "120s"]);
    let out = edgeops.ok(&["upgrade", inv, "--version", V131, "--ready-timeout", "120s"]);
    for host in hosts {
        let line = row(&out, host);
        assert!(
            line.contains("upgraded") && line.contains(V1313) && line.contains(V131),
            "{line}"
        );
        assert!(
            lab.ssh_ok(host, "k3s --version").contains(V131),
            "{host} binary"
        );
    }
    let nodes = lab.nodes("lab-14");
    assert!(
        nodes.values().all(|(v, r, _)| v == V131 && r == "True"),
        "{nodes:?}"
    );
}
