//! `edgeops exec` end to end against real OpenSSH servers on loopback: live prefixed output,
//! folded groups, JSON, a stopped and a frozen host reported while the others succeed, the
//! exit code, and Ctrl-C, SIGTERM or SIGHUP leaving no remote process.

mod ssh_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ssh_support::*;

/// An inventory whose hosts are `(name, port)` on 127.0.0.1, all using `key`.
fn inventory(dir: &Path, key: &Path, hosts: &[(&str, u16)], known_hosts: &str) -> PathBuf {
    let kh = dir.join("known_hosts");
    std::fs::write(&kh, known_hosts).unwrap();
    let mut text = format!(
        "[cluster]\nname = \"t\"\n\n[ssh]\nuser = \"root\"\nagent = false\n\
         identity_files = [\"{}\"]\nknown_hosts = \"{}\"\nhost_key_policy = \"strict\"\n\
         connect_timeout = \"2s\"\ncommand_timeout = \"60s\"\n",
        key.display(),
        kh.display()
    );
    for (i, (name, port)) in hosts.iter().enumerate() {
        let role = if i == 0 { "server" } else { "agent" };
        text.push_str(&format!(
            "\n[[hosts]]\nname = \"{name}\"\naddress = \"127.0.0.1\"\nrole = \"{role}\"\nssh = {{ port = {port} }}\n"
        ));
    }
    let path = dir.join("inventory.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn edgeops() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeops"));
    // Keep the user's own known_hosts out of the test.
    cmd.env("HOME", "/nonexistent-home-for-tests");
    cmd
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_edgeops(args: &[&str]) -> Outcome {
    let out = edgeops().args(args).output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn exec_streams_prefixed_lines_and_reports_failures_per_host() {
    let key = client_key("ed25519", "");
    let a = Sshd::start(&[&key.path]);
    let b = Sshd::start(&[&key.path]);
    let known = format!("{}{}", a.known_hosts_line(), b.known_hosts_line());
    let inv = inventory(
        key.dir.path(),
        &key.path,
        &[("lab-01", a.port), ("lab-02", b.port)],
        &known,
    );
    let ok = run_edgeops(&[
        "exec",
        inv.to_str().unwrap(),
        "--",
        "echo",
        "hi;",
        "echo",
        "oops",
        ">&2",
    ]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let mut lines: Vec<&str> = ok.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["lab-01: hi", "lab-02: hi"]);
    assert!(ok.stderr.contains("lab-01: oops\n"), "{}", ok.stderr);
    assert!(ok.stderr.contains("ok 2 (2 hosts)"), "{}", ok.stderr);

    // Fails on lab-01 only: sshd puts its own port last in $SSH_CONNECTION.
    let fail_on_a = format!("case \"$SSH_CONNECTION\" in *' {}') exit 1;; esac", a.port);
    let failed = run_edgeops(&["exec", inv.to_str().unwrap(), "--", &fail_on_a]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("lab-01: failed: exit 1"),
        "{}",
        failed.stderr
    );
    assert!(
        !failed.stderr.contains("lab-02: failed"),
        "{}",
        failed.stderr
    );
}

#[test]
fn group_folds_identical_output_and_json_has_one_document_per_host() {
    let key = client_key("ed25519", "");
    let servers: Vec<Sshd> = (0..3).map(|_| Sshd::start(&[&key.path])).collect();
    let known: String = servers.iter().map(Sshd::known_hosts_line).collect();
    let names = ["lab-01", "lab-02", "lab-03"];
    let hosts: Vec<(&str, u16)> = names
        .iter()
        .copied()
        .zip(servers.iter().map(|s| s.port))
        .collect();
    let inv = inventory(key.dir.path(), &key.path, &hosts, &known);

    let grouped = run_edgeops(&["exec", inv.to_str().unwrap(), "--group", "--", "echo same"]);
    assert_eq!(grouped.code, 0, "{}", grouped.stderr);
    assert_eq!(
        grouped.stdout,
        "---------------\nlab-[01-03] (3)\n---------------\nsame\n"
    );

    let json = run_edgeops(&[
        "exec",
        inv.to_str().unwrap(),
        "--output",
        "json",
        "--",
        "echo $((6*7))",
    ]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let docs: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 3);
    for (doc, name) in docs.iter().zip(names) {
        assert_eq!(doc["host"], name);
        assert_eq!(doc["status"], "ok");
        assert_eq!(doc["exit_code"], 0);
        assert_eq!(doc["stdout"], "42\n");
    }
}

#[test]
fn a_stopped_and_a_frozen_host_are_reported_while_the_others_succeed() {
    let key = client_key("ed25519", "");
    let up = Sshd::start(&[&key.path]);
    let mut stopped = Sshd::start(&[&key.path]);
    let known = format!("{}{}", up.known_hosts_line(), stopped.known_hosts_line());
    stopped.stop();
    let frozen = FrozenHost::start();
    let inv = inventory(
        key.dir.path(),
        &key.path,
        &[
            ("up", up.port),
            ("stopped", stopped.port),
            ("frozen", frozen.port),
        ],
        &known,
    );
    let started = std::time::Instant::now();
    let out = run_edgeops(&[
        "exec",
        inv.to_str().unwrap(),
        "--output",
        "json",
        "--",
        "echo alive",
    ]);
    let elapsed = started.elapsed();
    assert_eq!(out.code, 1, "{}", out.stderr);
    let docs: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs[0]["status"], "ok");
    assert_eq!(docs[0]["stdout"], "alive\n");
    assert_eq!(docs[1]["status"], "unreachable");
    assert!(
        docs[1]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{}",
        docs[1]
    );
    assert_eq!(docs[2]["status"], "unreachable");
    assert!(
        docs[2]["error"].as_str().unwrap().contains("no SSH answer"),
        "{}",
        docs[2]
    );
    // 3 attempts of a 2 s connect timeout plus 0.5 s + 1 s of backoff: the configured bound.
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

#[test]
fn ctrl_c_stops_the_remote_commands_and_exits() {
    // SIGTERM (a cancelled CI job, `timeout`) and SIGHUP (a closed terminal) do what Ctrl-C does.
    for (signal, name, marker) in [
        (libc::SIGINT, "SIGINT", "4713.0815"),
        (libc::SIGTERM, "SIGTERM", "4713.0816"),
        (libc::SIGHUP, "SIGHUP", "4713.0817"),
    ] {
        let key = client_key("ed25519", "");
        let a = Sshd::start(&[&key.path]);
        let b = Sshd::start(&[&key.path]);
        let known = format!("{}{}", a.known_hosts_line(), b.known_hosts_line());
        let inv = inventory(
            key.dir.path(),
            &key.path,
            &[("lab-01", a.port), ("lab-02", b.port)],
            &known,
        );
        let child = edgeops()
            .args([
                "exec",
                inv.to_str().unwrap(),
                "--",
                "echo started; sleep",
                marker,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until both remote commands run.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while processes_with(&format!("sleep {marker}")).len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "remote commands never started"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: signalling the child we spawned.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("interrupted ({name})")),
            "{stderr}"
        );
        assert!(stderr.contains("cancelled 2"), "{name}: {stderr}");
        let left = wait_until_gone(marker, Duration::from_secs(5));
        assert!(left.is_empty(), "{name}: remote processes left: {left:?}");
    }
}
