//! `edgeops reset` against the lab (namespaced Debian hosts with systemd and sshd, see
//! scripts/lab) and the k3s simulator (docs/K3S-SIM.md), whose installer places the uninstall
//! scripts under their real names. Needs root and `scripts/lab`.
//!
//! Both tests share one lab (id from `tests/support`) on disjoint hosts, each its own cluster.
//! What was wiped, kept or left alone is checked on the hosts (files, units, processes, the
//! cluster's Node objects, the hosts' journals), never only in edgeops's output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};

mod support;

use support::Edgeops;

const HOSTS: usize = 14;

struct Lab {
    inner: support::Lab,
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Lab {
    fn start() -> Lab {
        let inner = support::Lab::options(HOSTS).start();
        let hosts = inner.hosts().len();
        assert!(hosts >= HOSTS, "lab lists {hosts} hosts");
        Lab { inner }
    }

    fn ssh_ok(&self, host: &str, cmd: &str) -> String {
        let out = self.inner.ssh(host, cmd);
        assert!(out.status.success(), "{host}: `{cmd}`:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// An inventory for cluster `name`: the first host is the server, the rest agents.
    fn inventory(&self, dir: &Path, name: &str, hosts: &[&str]) -> PathBuf {
        self.inventory_ha(dir, name, hosts, 1)
    }

    /// The first `servers` hosts are servers (HA with embedded etcd when more than one).
    fn inventory_ha(&self, dir: &Path, name: &str, hosts: &[&str], servers: usize) -> PathBuf {
        self.inner
            .inventory(name)
            .hosts(hosts)
            .servers(servers)
            .write(dir)
    }

    /// Every trace of k3s on a host, one per line; empty when the host is clean. Checked with
    /// plain tools, independently of edgeops's own survey script.
    fn k3s_traces(&self, host: &str) -> String {
        self.ssh_ok(
            host,
            "sudo sh -c '\
             for p in /usr/local/bin/k3s /usr/local/bin/kubectl /usr/local/bin/crictl /usr/local/bin/ctr \
                      /usr/local/bin/k3s-killall.sh /usr/local/bin/k3s-uninstall.sh /usr/local/bin/k3s-agent-uninstall.sh \
                      /etc/rancher /var/lib/rancher /var/lib/kubelet /run/k3s /run/flannel /usr/local/share/edgeops; do \
               if [ -e \"$p\" ] || [ -L \"$p\" ]; then echo \"file $p\"; fi; done; \
             ls -d /etc/systemd/system/k3s* /etc/systemd/system/*/k3s* 2>/dev/null | sed \"s/^/unit file /\"; \
             systemctl list-units --all --plain --no-legend \"k3s*\" | sed \"s/^/unit /\"; \
             systemctl list-unit-files --plain --no-legend \"k3s*\" | sed \"s/^/unit file /\"; \
             for p in $(pgrep -f \"[k]3s (server|agent)\"); do echo \"process $p\"; done; \
             true'",
        )
    }

    /// What a reset of *other* hosts must not touch: k3s files (inode + mtime), the unit's
    /// start time and main PID.
    fn footprint(&self, host: &str) -> String {
        self.ssh_ok(
            host,
            "sudo sh -c 'stat -c \"%n %i %y\" /etc/rancher/k3s/* /usr/local/bin/k3s* \
             /etc/systemd/system/k3s*.service* 2>/dev/null; \
             systemctl show -p ActiveEnterTimestampMonotonic -p MainPID -p ActiveState k3s k3s-agent 2>/dev/null'",
        )
    }

    /// The node names the cluster lists, read on its server.
    fn nodes(&self, server: &str) -> Vec<(String, String)> {
        let json = self.ssh_ok(server, "sudo k3s kubectl get nodes -o json");
        let nodes: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut list: Vec<(String, String)> = nodes["items"]
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
                (n["metadata"]["name"].as_str().unwrap().to_owned(), ready)
            })
            .collect();
        list.sort();
        list
    }

    /// The edgeops reset records in a host's journal: (unix time, message).
    fn journal(&self, host: &str) -> Vec<(f64, String)> {
        self.ssh_ok(
            host,
            "sudo journalctl -t edgeops -o short-unix --no-pager --quiet",
        )
        .lines()
        .filter_map(|line| {
            let (time, rest) = line.split_once(' ')?;
            let message = rest.split_once(": ")?.1;
            Some((time.parse().ok()?, message.to_owned()))
        })
        .collect()
    }

    /// When the (one) uninstall on `host` began and ended, as the host's journal says.
    fn uninstall_span(&self, host: &str) -> (f64, f64) {
        let journal = self.journal(host);
        let at = |suffix: &str| -> Vec<f64> {
            journal
                .iter()
                .filter(|(_, m)| m.ends_with(suffix))
                .map(|(t, _)| *t)
                .collect()
        };
        let (start, end) = (at(": removing k3s"), at(": k3s removed"));
        assert_eq!(
            (start.len(), end.len()),
            (1, 1),
            "{host}: one reset recorded: {journal:?}"
        );
        (start[0], end[0])
    }
}

static LAB: OnceLock<Lab> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());

fn lab() -> &'static Lab {
    let _once = START.lock().unwrap_or_else(|e| e.into_inner());
    LAB.get_or_init(|| {
        let lab = Lab::start();
        if std::env::var_os("RESET_LAB_KEEP").is_none() {
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

/// The table line of `host`.
fn row<'a>(out: &'a str, host: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no line for {host} in:\n{out}"))
}

/// Host names in the order the report lists them.
fn report_order(out: &str, hosts: &[&str]) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|first| hosts.contains(first))
        .map(str::to_owned)
        .collect()
}

const OTHER_CONTEXT: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://other:6443\n\
contexts:\n- name: other\n  context:\n    cluster: other\n    user: other\n\
users:\n- name: other\n  user:\n    token: x\ncurrent-context: other\n";

#[test]
fn reset_a_cluster_agents_first_then_up_again() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-01", "lab-02", "lab-03", "lab-04"];
    let inventory = lab.inventory(dir.path(), "wipe", &hosts);
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();
    // The user's kubeconfig already has another context: it must survive up and reset.
    std::fs::create_dir_all(edgeops.kubeconfig().parent().unwrap()).unwrap();
    std::fs::write(edgeops.kubeconfig(), OTHER_CONTEXT).unwrap();

    let up = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    assert!(up.status.success(), "up failed:\n{}", text(&up));
    for host in hosts {
        assert!(
            !lab.k3s_traces(host).is_empty(),
            "{host} has no k3s after up"
        );
    }
    let kc = std::fs::read_to_string(edgeops.kubeconfig()).unwrap();
    assert!(
        kc.contains("name: wipe") && kc.contains("name: other"),
        "{kc}"
    );

    // Without --yes and without a terminal: refused, exit 2, nothing changed.
    let before: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    let refused = edgeops.run(&["reset", inv]);
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{out}");
    assert!(out.contains("stdin is not a terminal"), "{out}");
    assert!(out.contains("--yes"), "{out}");
    let after: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    assert_eq!(before, after, "a refused reset changed the hosts");
    assert_eq!(
        std::fs::read_to_string(edgeops.kubeconfig()).unwrap(),
        kc,
        "a refused reset changed the kubeconfig"
    );

    // Reset with --yes.
    let reset = edgeops.run(&["reset", inv, "--yes"]);
    let out = String::from_utf8_lossy(&reset.stdout).to_string();
    assert!(reset.status.success(), "reset failed:\n{}", text(&reset));
    for host in ["lab-02", "lab-03", "lab-04"] {
        let line = row(&out, host);
        assert!(
            line.contains("agents") && line.contains(" reset "),
            "{line}"
        );
        assert!(line.contains("k3s-agent-uninstall.sh"), "{line}");
    }
    let first = row(&out, "lab-01");
    assert!(
        first.contains("first server") && first.contains(" reset "),
        "{first}"
    );
    assert!(first.contains("k3s-uninstall.sh"), "{first}");
    // The report lists hosts in execution order: the agents, then the first server.
    let order = report_order(&out, &hosts);
    assert_eq!(order.last().map(String::as_str), Some("lab-01"), "{out}");
    assert_eq!(order.len(), 4, "{out}");

    // On the hosts: no k3s file, unit or process is left.
    for host in hosts {
        let traces = lab.k3s_traces(host);
        assert!(traces.is_empty(), "{host} after reset:\n{traces}");
    }
    // The execution order as the hosts recorded it: every agent finished before the server
    // began (all lab hosts share one clock).
    let (server_start, _) = lab.uninstall_span("lab-01");
    for agent in ["lab-02", "lab-03", "lab-04"] {
        let (_, agent_end) = lab.uninstall_span(agent);
        assert!(
            agent_end <= server_start,
            "{agent} finished its uninstall ({agent_end}) after the server's began ({server_start})"
        );
    }
    // The cluster's context is gone from the user's kubeconfig; the other one stays.
    let kc_after = std::fs::read_to_string(edgeops.kubeconfig()).unwrap();
    assert!(!kc_after.contains("wipe"), "{kc_after}");
    assert!(kc_after.contains("name: other"), "{kc_after}");
    assert!(out.contains("context wipe removed"), "{out}");

    // A second reset: every host already clean (JSON), nothing run on them but the survey.
    let again = edgeops.run(&["reset", inv, "--yes", "--output", "json"]);
    assert!(again.status.success(), "{}", text(&again));
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    let rows = report["hosts"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{report}");
    for host in rows {
        assert_eq!(host["result"], "already clean", "{host}");
        assert_eq!(host["status"], "unchanged", "{host}");
    }
    let phases: Vec<&str> = rows.iter().map(|h| h["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["agents", "agents", "agents", "first server"]);
    assert!(
        report["kubeconfig"]
            .as_str()
            .unwrap()
            .contains("already gone"),
        "{report}"
    );
    for host in hosts {
        assert_eq!(
            lab.journal(host).len(),
            2,
            "{host}: the second reset ran an uninstall"
        );
    }

    // up brings a Ready cluster back.
    let up = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out = text(&up);
    assert!(up.status.success(), "up after reset failed:\n{out}");
    for host in hosts {
        assert!(row(&out, host).contains("installed"), "{out}");
    }
    let nodes = lab.nodes("lab-01");
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    assert!(nodes.iter().all(|(_, ready)| ready == "True"), "{nodes:?}");
    let kc = std::fs::read_to_string(edgeops.kubeconfig()).unwrap();
    assert!(
        kc.contains("name: wipe") && kc.contains("name: other"),
        "{kc}"
    );
}

#[test]
fn reset_with_limit_removes_only_those_hosts_from_the_cluster() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-05", "lab-06", "lab-07"];
    let inventory = lab.inventory(dir.path(), "part", &hosts);
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();
    let up = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    assert!(up.status.success(), "up failed:\n{}", text(&up));
    let before: HashMap<&str, String> = hosts.iter().map(|h| (*h, lab.footprint(h))).collect();

    // Another run holds the up lock: refused, naming the holder, nothing changed.
    lab.ssh_ok(
        "lab-05",
        "echo \"$(date +%s) alice@ws pid 7 run feed\" | sudo tee /run/edgeops-up.lock >/dev/null",
    );
    let locked = edgeops.run(&["reset", inv, "--yes"]);
    let out = text(&locked);
    assert_eq!(locked.status.code(), Some(1), "{out}");
    assert!(out.contains("alice@ws pid 7 run feed"), "{out}");
    for host in hosts {
        assert_eq!(
            before[host],
            lab.footprint(host),
            "{host} changed under a held lock"
        );
    }
    lab.ssh_ok("lab-05", "sudo rm /run/edgeops-up.lock");

    // On a terminal it shows the plan and asks; anything but y/yes cancels: exit 2, nothing
    // changed, the lock it held released.
    let asked = edgeops.run_on_tty(&["reset", inv], "n\n");
    let out = text(&asked);
    assert_eq!(asked.status.code(), Some(2), "{out}");
    assert!(out.contains("Reset 3 host(s)?"), "{out}");
    assert!(
        out.contains("k3s-agent-uninstall.sh"),
        "the plan was not shown: {out}"
    );
    assert!(
        out.contains("reset cancelled: nothing was changed"),
        "{out}"
    );
    for host in hosts {
        assert_eq!(
            before[host],
            lab.footprint(host),
            "{host} changed by a cancelled reset"
        );
    }
    lab.ssh_ok("lab-05", "test ! -e /run/edgeops-up.lock");

    // --dry-run (no terminal, no --yes): the plan and each phase's actions on stdout, exit 0,
    // nothing changed, the lock given back.
    let dry = edgeops.run(&["reset", inv, "--dry-run"]);
    let out = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(out.contains("reset plan (the whole cluster"), "{out}");
    assert!(
        row(&out, "lab-06").contains("k3s-agent-uninstall.sh"),
        "{out}"
    );
    assert!(out.contains("  agents: would"), "{out}");
    assert!(
        out.contains("    lab-05: uninstall with /usr/local/bin/k3s-uninstall.sh"),
        "{out}"
    );
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    let dry = edgeops.run(&[
        "reset",
        inv,
        "--limit",
        "lab-07",
        "--dry-run",
        "--output",
        "json",
    ]);
    assert!(dry.status.success(), "{}", text(&dry));
    let plan: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["dry_run"], true, "{plan}");
    assert_eq!(plan["scope"], "hosts", "{plan}");
    let nodes = plan["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "nodes")
        .unwrap();
    assert_eq!(nodes["result"], "planned", "{plan}");
    assert_eq!(nodes["detail"][0][0], "lab-05", "{plan}");
    for host in hosts {
        assert_eq!(
            before[host],
            lab.footprint(host),
            "{host} changed by a dry run"
        );
    }
    assert_eq!(lab.nodes("lab-05").len(), 3, "a dry run deleted a Node");
    lab.ssh_ok("lab-05", "test ! -e /run/edgeops-up.lock");

    // The first server alone would orphan the agents: refused before any host is touched.
    let orphan = edgeops.run(&["reset", inv, "--limit", "lab-05", "--yes"]);
    let out = text(&orphan);
    assert_eq!(orphan.status.code(), Some(2), "{out}");
    assert!(out.contains("lab-06, lab-07"), "{out}");

    // One agent: only it is reset; the cluster forgets its node; the rest is untouched.
    let one = edgeops.run(&["reset", inv, "--limit", "lab-07", "--yes"]);
    let out = String::from_utf8_lossy(&one.stdout).to_string();
    assert!(one.status.success(), "{}", text(&one));
    assert!(row(&out, "lab-07").contains(" reset "), "{out}");
    assert_eq!(report_order(&out, &hosts), ["lab-07"], "{out}");
    let traces = lab.k3s_traces("lab-07");
    assert!(traces.is_empty(), "lab-07 after reset:\n{traces}");
    for host in ["lab-05", "lab-06"] {
        assert_eq!(before[host], lab.footprint(host), "{host} was touched");
    }
    let names: Vec<String> = lab.nodes("lab-05").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["lab-05", "lab-06"]);
    let kc = std::fs::read_to_string(edgeops.kubeconfig()).unwrap();
    assert!(
        kc.contains("name: part"),
        "a partial reset removed the context"
    );

    // k3s without its uninstall script: removed explicitly (units, processes, files).
    lab.ssh_ok("lab-06", "sudo rm /usr/local/bin/k3s-agent-uninstall.sh");
    let by_hand = edgeops.run(&["reset", inv, "--limit", "lab-06", "--yes"]);
    let out = String::from_utf8_lossy(&by_hand.stdout).to_string();
    assert!(by_hand.status.success(), "{}", text(&by_hand));
    assert!(
        row(&out, "lab-06").contains("no uninstall script: k3s-killall.sh"),
        "{out}"
    );
    let traces = lab.k3s_traces("lab-06");
    assert!(traces.is_empty(), "lab-06 after reset:\n{traces}");
    assert_eq!(
        before["lab-05"],
        lab.footprint("lab-05"),
        "the server was touched"
    );

    // Both boards rejoin under their names.
    let up = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    let out = text(&up);
    assert!(up.status.success(), "{out}");
    assert!(row(&out, "lab-05").contains("nothing to do"), "{out}");
    assert!(row(&out, "lab-06").contains("installed"), "{out}");
    assert!(row(&out, "lab-07").contains("installed"), "{out}");
    let nodes = lab.nodes("lab-05");
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    assert!(nodes.iter().all(|(_, ready)| ready == "True"), "{nodes:?}");
}

#[test]
fn reset_ha_servers_one_at_a_time_the_first_last() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-08", "lab-09", "lab-10", "lab-11"];
    let inventory = lab.inventory_ha(dir.path(), "trio", &hosts, 3);
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();
    let up = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    assert!(up.status.success(), "up failed:\n{}", text(&up));

    let reset = edgeops.run(&["reset", inv, "--yes"]);
    let out = String::from_utf8_lossy(&reset.stdout).to_string();
    assert!(reset.status.success(), "{}", text(&reset));
    assert_eq!(
        report_order(&out, &hosts),
        ["lab-11", "lab-09", "lab-10", "lab-08"],
        "{out}"
    );
    assert!(row(&out, "lab-09").contains("servers"), "{out}");
    assert!(row(&out, "lab-08").contains("first server"), "{out}");
    for host in hosts {
        let traces = lab.k3s_traces(host);
        assert!(traces.is_empty(), "{host} after reset:\n{traces}");
    }
    // As the hosts saw it: the agent, then each joined server alone, the first server last.
    let spans: Vec<(f64, f64)> = ["lab-11", "lab-09", "lab-10", "lab-08"]
        .iter()
        .map(|h| lab.uninstall_span(h))
        .collect();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "an uninstall began before the previous one ended: {spans:?}"
        );
    }
    assert!(
        !edgeops.kubeconfig().exists(),
        "the kubeconfig only held this cluster"
    );
}

#[test]
fn an_unreachable_agent_fails_alone_and_is_reset_later() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-12", "lab-13", "lab-14"];
    let inventory = lab.inventory(dir.path(), "gone", &hosts);
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();
    let up = edgeops.run(&["up", inv, "--ready-timeout", "90s"]);
    assert!(up.status.success(), "up failed:\n{}", text(&up));

    // Its link goes down (a board off the network; k3s still runs on it).
    lab.inner.link_down("lab-14");
    let reset = edgeops.run(&["reset", inv, "--yes"]);
    let out = String::from_utf8_lossy(&reset.stdout).to_string();
    assert_eq!(reset.status.code(), Some(1), "{}", text(&reset));
    let gone = row(&out, "lab-14");
    assert!(
        gone.contains("failed") && gone.contains("unreachable"),
        "{gone}"
    );
    assert!(row(&out, "lab-13").contains(" reset "), "{out}");
    assert!(row(&out, "lab-12").contains(" reset "), "{out}");
    for host in ["lab-12", "lab-13"] {
        let traces = lab.k3s_traces(host);
        assert!(traces.is_empty(), "{host} after reset:\n{traces}");
    }
    assert!(out.contains("1 failed"), "{out}");

    // Back online: the next reset finishes it; the others are already clean.
    lab.inner.link_up("lab-14");
    let again = edgeops.run(&["reset", inv, "--yes"]);
    let out = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.status.success(), "{}", text(&again));
    assert!(row(&out, "lab-14").contains(" reset "), "{out}");
    assert!(row(&out, "lab-13").contains("already clean"), "{out}");
    assert!(row(&out, "lab-12").contains("already clean"), "{out}");
    let traces = lab.k3s_traces("lab-14");
    assert!(traces.is_empty(), "lab-14 after reset:\n{traces}");
}
