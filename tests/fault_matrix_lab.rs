//! The fault matrix of docs/UP.md, each fault on real lab hosts (scripts/lab) with the k3s
//! simulator: what `up` reports per host, its exit code, how long it takes, and that a re-run once
//! the fault is gone converges. Termination signals (SIGTERM, SIGHUP, a second signal), the lock
//! (a holder gone from this workstation, a configurable expiry, `edgeops unlock`), a poisoned
//! kubeconfig, and a frozen / re-keyed / rebooted / cut-off host during one run. Also `plan` with
//! a relative inventory path and relative files in it (issue 19). Needs root.
//!
//! One lab shared by the tests, on disjoint hosts; torn down when the test binary ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod support;

use support::Edgeops;

const HOSTS: usize = 12;

static LAB: OnceLock<support::Lab> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());

fn lab() -> &'static support::Lab {
    let _once = START.lock().unwrap_or_else(|e| e.into_inner());
    LAB.get_or_init(|| {
        let lab = support::Lab::start(HOSTS);
        // SAFETY: registers a plain `extern "C"` function; it only runs at process exit.
        unsafe { libc::atexit(teardown) };
        lab
    })
}

extern "C" fn teardown() {
    if let Some(lab) = LAB.get() {
        lab.down_at_exit();
    }
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

/// An inventory for cluster `name` in `dir`: the first host the server, the rest agents.
fn inventory(lab: &support::Lab, dir: &Path, name: &str, hosts: &[&str], extra: &str) -> PathBuf {
    lab.inventory(name)
        .hosts(hosts)
        .cluster(extra)
        .ssh("connect_timeout = \"3s\"")
        .write(dir)
}

fn spawn(edgeops: &Edgeops, args: &[&str]) -> Child {
    edgeops
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Polls `cmd` on `host` until it succeeds (a state, not a duration).
fn wait_until(lab: &support::Lab, host: &str, cmd: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !lab.ssh(host, cmd).status.success() {
        assert!(Instant::now() < deadline, "{host}: `{cmd}` never held");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

fn lock_exists(lab: &support::Lab, server: &str) -> bool {
    lab.ssh(server, "test -e /run/edgeops-up.lock")
        .status
        .success()
}

fn epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn plant_lock(lab: &support::Lab, server: &str, since: u64, holder: &str) {
    lab.ssh_ok(
        server,
        &format!("echo '{since} {holder}' | sudo tee /run/edgeops-up.lock >/dev/null"),
    );
}

#[test]
fn termination_signals_act_as_ctrl_c_and_a_second_one_exits_at_once() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(lab, dir.path(), "signals", &["lab-01", "lab-02"], "");
    let inv = inv.to_str().unwrap();
    let edgeops = Edgeops::new();

    // SIGTERM while the agent installs: the run stops, gives the lock back, reports, exit 1.
    lab.k3s_fault("lab-02", "slow-install", "45");
    let run = spawn(&edgeops, &["up", inv, "--ready-timeout", "60s"]);
    wait_until(
        lab,
        "lab-02",
        "pgrep -fx 'sleep 45'",
        Duration::from_secs(120),
    );
    assert!(lock_exists(lab, "lab-01"));
    let sent = Instant::now();
    signal(&run, "TERM");
    let out = run.wait_with_output().unwrap();
    let took = sent.elapsed();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("interrupted (SIGTERM)"), "{all}");
    assert!(row(&all, "lab-02").contains("failed"), "{all}");
    assert!(
        took < Duration::from_secs(20),
        "SIGTERM took {took:?} to end the run"
    );
    assert!(
        !lock_exists(lab, "lab-01"),
        "the lock outlived SIGTERM:\n{all}"
    );
    // The remote install was stopped with the run.
    wait_until(
        lab,
        "lab-02",
        "! pgrep -fx 'sleep 45'",
        Duration::from_secs(10),
    );
    lab.k3s_fault_clear("lab-02");
    let again = edgeops.run(&["up", inv, "--ready-timeout", "60s"]);
    let all = text(&again);
    assert!(again.status.success(), "{all}");
    assert!(row(&all, "lab-02").contains("installed"), "{all}");

    // SIGHUP then SIGTERM: the second ends the process at once (128 + 15), the lock stays for
    // `edgeops unlock`, which names its holder and removes it with --yes.
    let inv3 = inventory(
        lab,
        dir.path(),
        "signals",
        &["lab-01", "lab-02", "lab-03"],
        "",
    );
    let inv3 = inv3.to_str().unwrap();
    lab.k3s_fault("lab-03", "slow-install", "45");
    let run = spawn(&edgeops, &["up", inv3, "--ready-timeout", "60s"]);
    let run_pid = run.id();
    wait_until(
        lab,
        "lab-03",
        "pgrep -fx 'sleep 45'",
        Duration::from_secs(120),
    );
    signal(&run, "HUP");
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    signal(&run, "TERM");
    let out = run.wait_with_output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(143), "{all}");
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    assert!(all.contains("interrupted (SIGHUP)"), "{all}");
    assert!(
        all.contains("SIGTERM again: exiting now (exit 143)"),
        "{all}"
    );
    if lock_exists(lab, "lab-01") {
        let asked = edgeops.run(&["unlock", inv3]);
        let shown = text(&asked);
        assert_eq!(
            asked.status.code(),
            Some(2),
            "no terminal, no --yes:\n{shown}"
        );
        assert!(shown.contains("command: edgeops up"), "{shown}");
        assert!(
            shown.contains(&format!("pid:     {run_pid} (gone from this workstation)")),
            "{shown}"
        );
        assert!(
            lock_exists(lab, "lab-01"),
            "unlock removed the lock without --yes"
        );
        let removed = edgeops.run(&["unlock", inv3, "--yes"]);
        assert!(removed.status.success(), "{}", text(&removed));
        assert!(text(&removed).contains("removed the lock on lab-01"));
        assert!(!lock_exists(lab, "lab-01"));
    } else {
        // The first signal's release can win the race with the second: then there is nothing to
        // unlock, and `unlock` says so.
        let none = edgeops.ok(&["unlock", inv3, "--yes"]);
        assert!(none.contains("no lock on lab-01"), "{none}");
    }
    lab.k3s_fault_clear("lab-03");
    let again = edgeops.run(&["up", inv3, "--ready-timeout", "60s"]);
    let all = text(&again);
    assert!(again.status.success(), "{all}");
    assert!(row(&all, "lab-03").contains("installed"), "{all}");
}

#[test]
fn locks_of_gone_runs_are_taken_over_expiry_is_configurable_and_a_poisoned_kubeconfig_is_refused() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let server = "lab-04";
    let inv = inventory(lab, dir.path(), "locks", &[server], "");
    let inv = inv.to_str().unwrap();
    let edgeops = Edgeops::new();
    edgeops.ok(&["up", inv, "--ready-timeout", "60s"]);

    // A holder on this workstation whose pid is gone: taken over at once, with a warning.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    plant_lock(
        lab,
        server,
        epoch(),
        &format!(
            "ghost@{} pid {gone_pid} run gone1 (edgeops up)",
            here.trim()
        ),
    );
    let out = edgeops.ok(&["up", inv]);
    assert!(
        out.contains(&format!(
            "warning: took over the lock on {server} of a run that is gone"
        )),
        "{out}"
    );
    assert!(!lock_exists(lab, server));

    // A live-looking holder elsewhere: refused, exit 1, naming the expiry and `edgeops unlock`.
    plant_lock(
        lab,
        server,
        epoch(),
        "ops@elsewhere pid 1 run r2 (edgeops reset)",
    );
    let refused = edgeops.run(&["up", inv]);
    let all = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{all}");
    assert!(
        all.contains("ops@elsewhere pid 1 run r2 (edgeops reset)"),
        "{all}"
    );
    assert!(all.contains("`edgeops unlock INVENTORY`"), "{all}");
    assert!(
        all.contains("older than 30m are taken over: `lock_expiry`"),
        "{all}"
    );
    // On a terminal `unlock` asks: "n" keeps the lock (exit 1), "y" removes it.
    let kept = edgeops.run_on_tty(&["unlock", inv], "n\n");
    assert_eq!(kept.status.code(), Some(1), "{}", text(&kept));
    assert!(text(&kept).contains("Remove this lock?"), "{}", text(&kept));
    assert!(lock_exists(lab, server));
    let removed = edgeops.run_on_tty(&["unlock", inv], "y\n");
    assert!(removed.status.success(), "{}", text(&removed));
    assert!(!lock_exists(lab, server));
    plant_lock(
        lab,
        server,
        epoch(),
        "ops@elsewhere pid 1 run r2 (edgeops reset)",
    );
    let shown = edgeops.ok(&["unlock", inv, "--yes"]);
    for field in [
        "who:     ops@elsewhere",
        "pid:     1 (on another workstation)",
        "run id:  r2",
        "command: edgeops reset",
        "age:",
    ] {
        assert!(shown.contains(field), "{field:?} in:\n{shown}");
    }
    assert!(!lock_exists(lab, server));

    // `lock_expiry` shortens the expiry: a 10 s old lock is stale at 5 s.
    let short = inventory(lab, dir.path(), "locks", &[server], "lock_expiry = \"5s\"");
    plant_lock(
        lab,
        server,
        epoch() - 10,
        "ops@elsewhere pid 1 run r3 (edgeops up)",
    );
    let out = edgeops.ok(&["up", short.to_str().unwrap()]);
    assert!(
        out.contains(&format!("took over a stale lock on {server}")),
        "{out}"
    );

    // A poisoned k3s.yaml: an exec credential plugin. Refused naming host and field; the user's
    // kubeconfig is left exactly as it was, and nothing runs.
    let kubeconfig = edgeops.kubeconfig();
    let before = std::fs::read(&kubeconfig).unwrap();
    lab.ssh_ok(
        server,
        "sudo cp /etc/rancher/k3s/k3s.yaml /root/k3s.yaml.orig && \
         sudo sed -i 's|^  user:$|  user:\\n    exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, touch /tmp/pwned]}|' /etc/rancher/k3s/k3s.yaml && \
         sudo grep -q 'exec:' /etc/rancher/k3s/k3s.yaml",
    );
    let refusal = format!("the k3s kubeconfig of {server}: refused `users[0].user.exec`");
    let started = Instant::now();
    let fetched = edgeops.run(&["kubeconfig", inv]);
    let all = text(&fetched);
    assert_eq!(fetched.status.code(), Some(1), "{all}");
    assert!(all.contains(&refusal), "{all}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        std::fs::read(&kubeconfig).unwrap(),
        before,
        "kubeconfig changed it"
    );
    // `up` reports the refusal as its kubeconfig note and fails (exit 1): the cluster itself is
    // fine, but the access `up` promises was refused.
    let up = edgeops.run(&["up", inv]);
    let all = text(&up);
    assert_eq!(up.status.code(), Some(1), "{all}");
    assert!(all.contains("the kubeconfig was not merged"), "{all}");
    assert!(
        all.contains(&format!("note: kubeconfig: {refusal}")),
        "{all}"
    );
    assert_eq!(std::fs::read(&kubeconfig).unwrap(), before, "up changed it");
    assert!(!Path::new("/tmp/pwned").exists());
    lab.ssh_ok(
        server,
        "sudo cp /root/k3s.yaml.orig /etc/rancher/k3s/k3s.yaml",
    );
    let out = edgeops.ok(&["up", inv]);
    assert!(out.contains("nothing to do"), "{out}");
}

#[test]
fn host_faults_during_one_up_are_reported_per_host_in_bounded_time_and_a_rerun_converges() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    // lab-05 server; lab-06 frozen; lab-07 re-keyed; lab-08 rebooted mid-install; lab-09 link cut
    // mid-install; lab-10 fine.
    let hosts = ["lab-05", "lab-06", "lab-07", "lab-08", "lab-09", "lab-10"];
    let inv = inventory(lab, dir.path(), "faults", &hosts, "");
    let inv = inv.to_str().unwrap();
    let edgeops = Edgeops::new();
    lab.freeze("lab-06");
    lab.rotate_hostkey("lab-07", false);
    lab.k3s_fault("lab-08", "slow-install", "40");
    lab.k3s_fault("lab-09", "slow-install", "41");
    let old_boot = lab.boot_id("lab-08");
    let started = Instant::now();
    let run = spawn(&edgeops, &["up", inv, "--ready-timeout", "60s"]);
    wait_until(
        lab,
        "lab-08",
        "pgrep -fx 'sleep 40'",
        Duration::from_secs(120),
    );
    lab.reboot("lab-08");
    wait_until(
        lab,
        "lab-09",
        "pgrep -fx 'sleep 41'",
        Duration::from_secs(60),
    );
    lab.link_down("lab-09");
    let out = run.wait_with_output().unwrap();
    let took = started.elapsed();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    // ssh keepalive (15 s x 3) bounds the cut link; everything else is quicker.
    assert!(
        took < Duration::from_secs(150),
        "the run took {took:?}:\n{all}"
    );
    assert!(row(&all, "lab-05").contains("installed"), "{all}");
    assert!(row(&all, "lab-10").contains("installed"), "{all}");
    for (host, why) in [
        ("lab-06", "no SSH answer from"),
        ("lab-07", "HOST KEY CHANGED"),
        ("lab-08", "connection lost"),
        ("lab-09", "connection lost"),
    ] {
        let line = row(&all, host);
        assert!(
            line.contains("failed") && line.contains(why),
            "{host}: {line}\n{all}"
        );
    }
    assert!(!lock_exists(lab, "lab-05"), "{all}");

    lab.thaw("lab-06");
    lab.rotate_hostkey("lab-07", true);
    lab.wait_for_new_boot("lab-08", &old_boot, Duration::from_secs(60));
    lab.k3s_fault_clear("lab-08");
    lab.link_up("lab-09");
    lab.k3s_fault_clear("lab-09");
    let again = edgeops.run(&["up", inv, "--ready-timeout", "60s"]);
    let all = text(&again);
    assert!(again.status.success(), "{all}");
    for host in ["lab-06", "lab-07", "lab-08"] {
        assert!(row(&all, host).contains("installed"), "{host}:\n{all}");
    }
    // Cut off, lab-09 could not be told to stop. Whether its installer finished on its own or
    // was ended by sshd when the dead connection was noticed is a race on the host's side, so
    // the re-run either finds it converged or finishes the job; either way it ends Ready.
    let cut_off = row(&all, "lab-09");
    assert!(
        ["nothing to do", "reconfigured", "installed"]
            .iter()
            .any(|result| cut_off.contains(result)),
        "lab-09:\n{all}"
    );
    assert!(
        all.lines()
            .any(|l| l.starts_with("lab-09") && l.split_whitespace().nth(1) == Some("Ready")),
        "lab-09 not Ready:\n{all}"
    );
    assert!(
        row(&all, "lab-10").contains("nothing to do"),
        "lab-10:\n{all}"
    );
}

#[test]
fn plan_resolves_a_relative_inventory_and_its_relative_files_once() {
    let lab = lab();
    let work = tempfile::tempdir().unwrap();
    let site = work.path().join("site");
    std::fs::create_dir_all(site.join("keys")).unwrap();
    std::fs::create_dir_all(site.join("tpl")).unwrap();
    std::fs::copy(lab.key_path(), site.join("keys/id")).unwrap();
    std::fs::copy(lab.known_hosts_path(), site.join("known_hosts")).unwrap();
    let absolute = inventory(lab, &site, "paths", &["lab-11", "lab-12"], "");
    let text_abs = std::fs::read_to_string(&absolute).unwrap();
    let relative = text_abs
        .replace(&lab.key_path().display().to_string(), "keys/id")
        .replace(&lab.known_hosts_path().display().to_string(), "known_hosts")
        + "\n[gitlab]\nurl = \"https://gitlab.example.com\"\nproject = \"a/b\"\ntemplates_dir = \"tpl\"\n";
    std::fs::write(site.join("inv.toml"), relative).unwrap();
    for inventory in [PathBuf::from("site/inv.toml"), site.join("inv.toml")] {
        let out = Edgeops::new()
            .with_env("GITLAB_TOKEN", "glpat-unused-by-plan")
            .command(&["plan", inventory.to_str().unwrap()])
            .current_dir(work.path())
            .output()
            .unwrap();
        let all = text(&out);
        assert!(out.status.success(), "{}: {all}", inventory.display());
        assert!(row(&all, "lab-11").contains("would install"), "{all}");
        assert!(row(&all, "lab-12").contains("would install"), "{all}");
    }
}
