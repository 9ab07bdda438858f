//! Failures as real k3s makes them, against the lab and the k3s simulator: a join token changed
//! under a running cluster, a join k3s refuses (it retries forever, so the installer hangs), and
//! the first server lost while agents wait to join. Needs root and `scripts/lab`.
//!
//! The tests share one small lab (id from `tests/support`) on disjoint hosts, each its own
//! cluster. What changed or kept running is checked on the hosts, never only in the output.

use std::process::{Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod support;

use support::Edgeops;

const HOSTS: usize = 13;

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

/// The table line of `host` in `up` output.
fn row<'a>(out: &'a str, host: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no line for {host} in:\n{out}"))
}

impl Lab {
    fn start() -> Lab {
        let inner = support::Lab::options(HOSTS).start();
        Lab { inner }
    }

    fn ssh_ok(&self, host: &str, cmd: &str) -> String {
        let out = self.inner.ssh(host, cmd);
        assert!(out.status.success(), "{host}: `{cmd}`:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn knob(&self, args: &[&str]) {
        let out = self.inner.run_lab(args);
        assert!(
            out.status.success(),
            "scripts/lab {args:?}:\n{}",
            text(&out)
        );
    }

    /// Cluster `name` (support's lab inventory): the first host the server, the rest agents.
    fn inventory(&self, name: &str, hosts: &[&str]) -> support::LabInventory<'_> {
        self.inner.inventory(name).hosts(hosts)
    }

    /// edgeops's files (inode + mtime), the unit files and the service's start and PID.
    fn footprint(&self, host: &str) -> String {
        self.ssh_ok(
            host,
            "sudo sh -c 'stat -c \"%n %i %y\" /etc/rancher/k3s/* /etc/systemd/system/k3s*.service* \
             2>/dev/null; systemctl show -p ActiveEnterTimestampMonotonic -p MainPID k3s k3s-agent'",
        )
    }

    fn unit_state(&self, host: &str, unit: &str) -> String {
        let out = self.inner.ssh(host, &format!("systemctl is-active {unit}"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

static LAB: OnceLock<Lab> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());

fn lab() -> &'static Lab {
    let _once = START.lock().unwrap_or_else(|e| e.into_inner());
    LAB.get_or_init(|| {
        let lab = Lab::start();
        // SAFETY: registers a plain `extern "C"` function; it only runs at process exit.
        unsafe { libc::atexit(teardown) };
        lab
    })
}

extern "C" fn teardown() {
    if let Some(lab) = LAB.get() {
        lab.inner.down_at_exit();
    }
}

#[test]
fn a_changed_join_token_stops_up_before_any_change_and_rotates_on_request() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("join.token");
    std::fs::write(&token_file, "alpha-join-secret-0001\n").unwrap();
    let token_line = format!("token_file = \"{}\"", token_file.display());
    let hosts = ["lab-01", "lab-02"];
    let inventory = lab
        .inventory("tok", &hosts)
        .cluster(&token_line)
        .write(dir.path());
    let edgeops = Edgeops::new();
    edgeops.ok(&["up", inventory.to_str().unwrap(), "--ready-timeout", "60s"]);

    // Another token in the inventory, and a change that makes both hosts reconfigure (which
    // would write the token and restart k3s).
    std::fs::write(&token_file, "bravo-join-secret-0002\n").unwrap();
    let extra = format!("{token_line}\ndisable = [\"traefik\"]");
    let inventory = lab
        .inventory("tok", &hosts)
        .cluster(&extra)
        .write(dir.path());
    let before: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    let run = edgeops.run(&["up", inventory.to_str().unwrap()]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(
        out.contains("cluster tok: the inventory's join token")
            && out.contains("does not match the running cluster's on lab-01")
            && out.contains("nothing was changed on lab-01")
            && out.contains("encrypted with different token"),
        "{out}"
    );
    assert!(row(&out, "lab-02").contains("skipped"), "{out}");
    let after: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    assert_eq!(before, after, "nothing may change on the hosts");
    assert_eq!(lab.unit_state("lab-01", "k3s"), "active");
    assert!(out.contains("--rotate-join-token"), "{out}");

    // A deliberate rotation: k3s's own, then every node's token file; the run goes on.
    let run = edgeops.run(&["up", inventory.to_str().unwrap(), "--rotate-join-token"]);
    let rotated = text(&run);
    assert!(run.status.success(), "{rotated}");
    assert!(rotated.contains("join token rotated"), "{rotated}");
    let server_token = lab.ssh_ok("lab-01", "sudo cat /var/lib/rancher/k3s/server/token");
    assert!(
        server_token
            .trim()
            .ends_with("::server:bravo-join-secret-0002"),
        "the cluster runs with the new token"
    );
    for host in hosts {
        let file = lab.ssh_ok(host, "sudo cat /etc/rancher/k3s/edgeops-token");
        assert_eq!(file.trim(), "bravo-join-secret-0002", "{host}'s token file");
    }
    // The agent, restarted, joins again with the new token; the server restarted with it.
    lab.ssh_ok("lab-02", "sudo timeout 60 systemctl restart k3s-agent");
    assert_eq!(lab.unit_state("lab-02", "k3s-agent"), "active");
    assert_eq!(lab.unit_state("lab-01", "k3s"), "active");
    let again = edgeops.run(&["up", inventory.to_str().unwrap(), "--ready-timeout", "60s"]);
    assert!(again.status.success(), "{}", text(&again));
    for secret in ["alpha-join-secret-0001", "bravo-join-secret-0002"] {
        for output in [&out, &rotated] {
            assert!(!output.contains(secret), "a token leaked:\n{output}");
        }
        assert!(
            !edgeops.logs().contains(secret),
            "a token is in the run logs"
        );
    }
}

#[test]
fn a_taken_node_name_is_refused_reported_and_stopped_within_the_join_limit() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-03", "lab-04"];
    let inventory = lab
        .inventory("taken", &hosts)
        .cluster("join_timeout = \"40s\"")
        .write(dir.path());
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();
    edgeops.ok(&["up", inv, "--ready-timeout", "60s"]);

    // lab-04 is re-flashed: k3s and its node password gone, its Node still in the cluster.
    lab.ssh_ok(
        "lab-04",
        "sudo sh -c '/usr/local/bin/k3s-agent-uninstall.sh >/dev/null 2>&1; rm -f /etc/rancher/node/password'",
    );
    let started = Instant::now();
    let run = edgeops.run(&["up", inv, "--ready-timeout", "30s"]);
    let took = started.elapsed();
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    let refused = row(&out, "lab-04");
    assert!(
        refused.contains("failed")
            && refused.contains("node name lab-04 is already registered by another machine")
            && refused.contains("Node password rejected")
            && refused.contains("edgeops reset --limit lab-04"),
        "{refused}"
    );
    // k3s logs the refusal at once: the watch stops it well before the limit.
    assert!(took < Duration::from_secs(60), "took {took:?}:\n{out}");
    assert_eq!(lab.unit_state("lab-04", "k3s-agent"), "inactive");
    let left = lab.ssh_ok(
        "lab-04",
        "pgrep -fa '[i]nstall.sh|[s]ystemctl restart' || true",
    );
    assert!(left.trim().is_empty(), "left running on lab-04: {left}");

    // The fix it names works: delete the stale Node, then join again.
    edgeops.ok(&["reset", inv, "--limit", "lab-04", "--yes"]);
    let again = edgeops.run(&["up", inv, "--ready-timeout", "60s"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(row(&text(&again), "lab-04").contains("installed"));
}

#[test]
fn losing_the_first_server_mid_run_stops_the_waiting_agent_within_the_join_limit() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-05", "lab-06"];
    let inventory = lab
        .inventory("lost", &hosts)
        .cluster("join_timeout = \"20s\"")
        .write(dir.path());
    let inv = inventory.to_str().unwrap().to_owned();
    // The agent's install spends 10 s downloading: the first server goes away meanwhile.
    lab.knob(&["k3s-fault", "lab-06", "slow-install", "10"]);
    let edgeops = Edgeops::new();
    let started = Instant::now();
    let child = edgeops
        .command(&["up", &inv, "--ready-timeout", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while lab.unit_state("lab-05", "k3s") != "active" {
        assert!(Instant::now() < deadline, "the first server never came up");
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));
    lab.knob(&["stop", "lab-05"]);
    let run = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let out = text(&run);
    lab.knob(&["k3s-fault", "lab-06", "--clear"]);
    assert_eq!(run.status.code(), Some(1), "{out}");
    let agent = row(&out, "lab-06");
    assert!(
        agent.contains("failed")
            && agent.contains("the first server lab-05")
            && agent.contains("did not answer for 20s (join_timeout)"),
        "{agent}\n{out}"
    );
    // Bounded: the first server's install, the 10 s download, the 20 s limit, the stop.
    assert!(took < Duration::from_secs(120), "took {took:?}:\n{out}");
    assert_ne!(lab.unit_state("lab-06", "k3s-agent"), "activating");
    // The lock on the lost server is reported (it was on its tmpfs: gone with its reboot).
    assert!(
        out.contains("lab-05: could not release the up lock"),
        "{out}"
    );

    // The server comes back (its lock was on tmpfs): a re-run converges.
    lab.knob(&["start", "lab-05"]);
    let again = edgeops.run(&["up", &inv, "--ready-timeout", "60s"]);
    let out = text(&again);
    assert!(again.status.success(), "{out}");
}

/// The Ready status of `node` as the first server's API reports it ("" when it cannot say).
fn node_ready(lab: &Lab, server: &str, node: &str) -> String {
    let out = lab.inner.ssh(server, "sudo k3s kubectl get nodes -o json");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["metadata"]["name"] == node)
        .flat_map(|n| {
            n["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn ha_servers_leave_one_at_a_time_and_what_would_break_quorum_is_refused() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-07", "lab-08", "lab-09"];
    let inventory = lab
        .inventory("quorum", &hosts)
        .servers(hosts.len())
        .write(dir.path());
    let inv = inventory.to_str().unwrap();
    let edgeops = Edgeops::new();
    edgeops.ok(&["up", inv, "--ready-timeout", "60s"]);

    // lab-09 goes down: its etcd member stays, down. Taking lab-08 out now would leave lab-07
    // and a dead member: no quorum. Refused before anything changes.
    lab.knob(&["stop", "lab-09"]);
    wait_for("lab-09 Unknown", Duration::from_secs(40), || {
        node_ready(lab, "lab-07", "lab-09") == "Unknown"
    });
    let run = edgeops.run(&["reset", inv, "--limit", "lab-08", "--yes"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(
        out.contains("removing lab-08 would leave the embedded etcd without quorum")
            && out.contains("lab-09 (down)"),
        "{out}"
    );
    assert_eq!(lab.unit_state("lab-08", "k3s"), "active", "nothing changed");
    assert_eq!(node_ready(lab, "lab-07", "lab-08"), "True");

    // Restarting a server now (a reconfigure, an upgrade) would cost the quorum too: refused.
    let before: Vec<String> = ["lab-07", "lab-08"]
        .iter()
        .map(|h| lab.footprint(h))
        .collect();
    let changed = lab
        .inventory("quorum", &hosts)
        .servers(hosts.len())
        .cluster("disable = [\"traefik\"]")
        .write(dir.path());
    let run = edgeops.run(&["up", changed.to_str().unwrap()]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(
        out.contains("restarting server lab-07 would leave the embedded etcd without quorum"),
        "{out}"
    );
    let run = edgeops.run(&["upgrade", inv, "--version", "v1.32.0+k3s1"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(2), "{out}");
    assert!(
        out.contains("refusing to upgrade: restarting server lab-07"),
        "{out}"
    );
    let after: Vec<String> = ["lab-07", "lab-08"]
        .iter()
        .map(|h| lab.footprint(h))
        .collect();
    assert_eq!(before, after, "nothing may change on the servers");

    // lab-08 down too: 1 of 3 members, the API cannot answer; status says so and names the
    // recovery.
    lab.knob(&["stop", "lab-08"]);
    std::thread::sleep(Duration::from_secs(7));
    let status = edgeops.run(&["status", inv]);
    let out = text(&status);
    assert!(
        out.contains("cluster quorum: the embedded etcd has lost its quorum")
            && out.contains("k3s server --cluster-reset` on lab-07"),
        "{out}"
    );

    // The recovery it names: --cluster-reset makes lab-07 the only member; the API answers.
    lab.ssh_ok(
        "lab-07",
        "sudo sh -c 'systemctl stop k3s && k3s server --cluster-reset 2>&1 | tail -n 1 && systemctl start k3s'",
    );
    wait_for(
        "the API after --cluster-reset",
        Duration::from_secs(60),
        || {
            lab.inner
                .ssh("lab-07", "sudo k3s kubectl get nodes -o name")
                .status
                .success()
        },
    );
    let status = edgeops.run(&["status", inv]);
    assert!(
        !text(&status).contains("lost its quorum"),
        "{}",
        text(&status)
    );

    // Both back. As k3s documents for a cluster reset ("back up and delete ${datadir}/server/db
    // on each peer etcd server and rejoin the nodes"), their old etcd data goes first (here on
    // the stopped boards' disks): a server that still holds it is no member of the reset
    // cluster and never becomes ready (k3s logs "this server is a not a member of the etcd
    // cluster" every 5 s), so its boot would not finish.
    for host in ["lab-08", "lab-09"] {
        let db = lab
            .inner
            .state_dir()
            .join("hosts")
            .join(host)
            .join("upper/var/lib/rancher/k3s/server/db");
        std::fs::rename(&db, db.with_file_name("db.before-cluster-reset")).unwrap();
    }
    lab.knob(&["start", "lab-08"]);
    lab.knob(&["start", "lab-09"]);
    // Now both leave, one at a time, Node (member) before uninstall: the API still answers and
    // lab-07 is the one node left.
    wait_for("lab-08 and lab-09 Ready", Duration::from_secs(90), || {
        node_ready(lab, "lab-07", "lab-08") == "True"
            && node_ready(lab, "lab-07", "lab-09") == "True"
    });
    let run = edgeops.run(&["reset", inv, "--limit", "lab-08,lab-09", "--yes"]);
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    let left = lab.ssh_ok("lab-07", "sudo k3s kubectl get nodes -o name");
    assert_eq!(left.trim(), "node/lab-07", "{out}");
}

#[test]
fn servers_go_up_one_minor_at_a_time_and_agents_never_pass_them() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-10", "lab-11"];
    let old_path = lab
        .inventory("skew", &hosts)
        .version("v1.30.8+k3s1")
        .cluster("join_timeout = \"20s\"")
        .write(dir.path());
    let pinned = std::fs::read_to_string(&old_path).unwrap();
    let inv = old_path.to_str().unwrap();
    let edgeops = Edgeops::new();
    edgeops.ok(&["up", inv, "--ready-timeout", "60s"]);
    let before: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();

    // v1.30 -> v1.32 skips v1.31: refused, naming the release to go through (from the channel).
    let run = edgeops.run(&["upgrade", inv, "--version", "v1.32.0+k3s1"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(2), "{out}");
    assert!(
        out.contains("lab-10 runs v1.30.8+k3s1")
            && out.contains("go through v1.31.4+k3s1 → v1.32.0+k3s1"),
        "{out}"
    );
    // The same for a raised pin in `up`.
    let raised = dir.path().join("skew-new.toml");
    std::fs::write(&raised, pinned.replace("v1.30.8+k3s1", "v1.32.0+k3s1")).unwrap();
    let run = edgeops.run(&["up", raised.to_str().unwrap()]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(
        out.contains("go through v1.31.4+k3s1 → v1.32.0+k3s1")
            && out.contains("nothing was changed"),
        "{out}"
    );
    let after: Vec<String> = hosts.iter().map(|h| lab.footprint(h)).collect();
    assert_eq!(before, after, "nothing may change");

    // Forced past the rules, k3s itself refuses: an agent newer than its server is not let in
    // (the join watch stops it with k3s's reason) ...
    let run = edgeops.run(&[
        "upgrade",
        inv,
        "--version",
        "v1.31.4+k3s1",
        "--limit",
        "lab-11",
        "--force",
    ]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(
        row(&out, "lab-11").contains("newer than the API server"),
        "{out}"
    );
    // ... and a server skipping a minor does not start on its datastore.
    let run = edgeops.run(&[
        "upgrade",
        inv,
        "--version",
        "v1.32.0+k3s1",
        "--limit",
        "lab-10",
        "--force",
    ]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    let journal = lab.ssh_ok("lab-10", "sudo journalctl -u k3s --no-pager");
    assert!(journal.contains("skips a minor version"), "{journal}");
}

#[test]
fn a_slow_board_past_its_join_limit_is_stopped_and_a_fitting_limit_lets_it_join() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-12", "lab-13"];
    // A Pi-like agent: its k3s takes 15 s to start (slow-boards knob), the limit is 5 s.
    lab.knob(&["k3s-fault", "lab-13", "slow", "15"]);
    let short = lab
        .inventory("slow", &hosts)
        .cluster("join_timeout = \"5s\"")
        .write(dir.path());
    let edgeops = Edgeops::new();
    let started = Instant::now();
    let run = edgeops.run(&["up", short.to_str().unwrap(), "--ready-timeout", "20s"]);
    let took = started.elapsed();
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    let agent = row(&out, "lab-13");
    assert!(
        agent.contains("k3s-agent was still starting after 5s (join_timeout)")
            && agent.contains("Raise [cluster] join_timeout"),
        "{agent}"
    );
    assert!(took < Duration::from_secs(90), "took {took:?}");
    assert_eq!(lab.unit_state("lab-13", "k3s-agent"), "inactive");
    // With a limit that fits the board, the same board joins.
    let fitting = lab
        .inventory("slow", &hosts)
        .cluster("join_timeout = \"60s\"")
        .write(dir.path());
    let run = edgeops.run(&["up", fitting.to_str().unwrap(), "--ready-timeout", "90s"]);
    lab.knob(&["k3s-fault", "lab-13", "--clear"]);
    assert!(run.status.success(), "{}", text(&run));
}
