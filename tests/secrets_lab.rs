//! Secrets and limits against hostile or careless hosts, on the lab (real sshd, sudo, PAM and
//! systemd; the k3s simulator): `sudo = "password"` on a NOPASSWD host provisions with 0600
//! files that hold no password; a wrong password fails in preflight after exactly one PAM
//! attempt, before any secret is sent; remote output (exec and the facts answer) is bounded per
//! command; `-v`/`-vv` show what they promise, in colour only on a terminal without `NO_COLOR`.
//! One lab of 3 hosts for all tests (torn down when the test binary ends).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};

use support::Edgeops;

const PASSWORD: &str = "pa55-Word for sudo";
const TOKEN: &str = "secrets-lab-cluster-token-0123456789";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

static LAB: OnceLock<support::Lab> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());

fn lab() -> &'static support::Lab {
    let _once = START.lock().unwrap_or_else(|e| e.into_inner());
    LAB.get_or_init(|| {
        let lab = support::Lab::start(3);
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

/// A one-server inventory for `host` with `sudo = "password"` (password in $SUDO_PW) and the
/// cluster token in $CLUSTER_TOKEN.
fn inventory(lab: &support::Lab, dir: &Path, host: &str, server_args: &str) -> PathBuf {
    lab.inventory(&format!("sec-{host}"))
        .hosts(&[host])
        .cluster("token_env = \"CLUSTER_TOKEN\"")
        .cluster(server_args)
        .sudo_password_env("SUDO_PW")
        .file_name(&format!("{host}.toml"))
        .write(dir)
}

fn edgeops(password: &str) -> Edgeops {
    Edgeops::new()
        .with_env("SUDO_PW", password)
        .with_env("CLUSTER_TOKEN", TOKEN)
}

#[test]
fn sudo_password_on_a_nopasswd_host_provisions_with_0600_files_holding_no_password() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    // lab-01 keeps the lab's default: NOPASSWD sudo (as Raspberry Pi OS ships).
    let inv = inventory(lab, dir.path(), "lab-01", "");
    let run = edgeops(PASSWORD).run(&["up", inv.to_str().unwrap(), "--ready-timeout", "60s"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(0), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");
    let files = lab.ssh_ok(
        "lab-01",
        "sudo stat -c '%a %n' /etc/rancher/k3s/config.yaml /etc/rancher/k3s/edgeops-token",
    );
    assert_eq!(
        files,
        "600 /etc/rancher/k3s/config.yaml\n600 /etc/rancher/k3s/edgeops-token"
    );
    let token = lab.ssh_ok("lab-01", "sudo cat /etc/rancher/k3s/edgeops-token");
    assert_eq!(token, TOKEN, "the token file holds the token");
    let config = lab.ssh_ok("lab-01", "sudo cat /etc/rancher/k3s/config.yaml");
    assert!(!config.contains(PASSWORD), "{config}");
    assert!(!config.contains(TOKEN), "{config}");
    let anywhere = lab.ssh(
        "lab-01",
        &format!("sudo grep -rlF '{PASSWORD}' /etc/rancher /var/lib/rancher/k3s/server/token"),
    );
    assert_eq!(
        String::from_utf8_lossy(&anywhere.stdout),
        "",
        "the sudo password is in no k3s file"
    );
    // `exec --sudo -- cat` reads the command's own stdin (empty), never the password.
    let cat = edgeops(PASSWORD).run(&["exec", inv.to_str().unwrap(), "--sudo", "--", "cat; id -u"]);
    let out = text(&cat);
    assert_eq!(cat.status.code(), Some(0), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");
    assert!(out.contains("lab-01: 0"), "{out}");
}

#[test]
fn a_wrong_sudo_password_fails_in_preflight_after_one_pam_attempt() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    // pam_faillock records every failed PAM authentication of sudo (deny high enough that the
    // account is never locked by this test: only the count matters). Set up while sudo is
    // still passwordless, then sudo starts asking.
    lab.ssh_ok(
        "lab-02",
        "sudo sh -c 'printf \"%s\\n\" \
         \"auth required pam_faillock.so preauth deny=50\" \
         \"auth sufficient pam_unix.so\" \
         \"auth [default=die] pam_faillock.so authfail deny=50\" \
         \"@include common-account\" \
         \"@include common-session-noninteractive\" >/etc/pam.d/sudo; \
         faillock --user pi --reset'",
    );
    lab.sudo_password("lab-02", PASSWORD);
    let failures = || {
        let out = lab.ssh(
            "lab-02",
            &format!("printf '%s\\n' '{PASSWORD}' | sudo -S -p '' faillock --user pi"),
        );
        assert!(out.status.success(), "faillock: {}", text(&out));
        // One line per recorded failure, each starting with its date.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .count()
    };
    // The correct password works (and resets nothing: faillock counts failures only).
    let base = failures();

    let inv = inventory(lab, dir.path(), "lab-02", "");
    let run = edgeops("not the password").run(&["up", inv.to_str().unwrap()]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(out.contains("sudo refused the password"), "{out}");
    assert!(out.contains("one attempt"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");
    assert_eq!(failures() - base, 1, "exactly one PAM attempt:\n{out}");
    lab.ssh_ok("lab-02", "test ! -e /etc/rancher/k3s");

    // exec --sudo with the wrong password: refused once, the command never runs.
    let exec =
        edgeops("not the password").run(&["exec", inv.to_str().unwrap(), "--sudo", "--", "id -u"]);
    let out = text(&exec);
    assert_eq!(exec.status.code(), Some(1), "{out}");
    assert!(out.contains("sudo refused the password"), "{out}");
    assert_eq!(
        failures() - base,
        2,
        "one more PAM attempt for the second run:\n{out}"
    );

    // The right password on a prompting host: root, and the command's stdin is its own.
    let ok = edgeops(PASSWORD).run(&["exec", inv.to_str().unwrap(), "--sudo", "--", "cat; id -u"]);
    let out = text(&ok);
    assert_eq!(ok.status.code(), Some(0), "{out}");
    assert!(
        out.contains("lab-02: 0") && !out.contains(PASSWORD),
        "{out}"
    );
    assert_eq!(failures() - base, 2, "{out}");
}

#[test]
fn remote_output_is_bounded_per_command() {
    let lab = lab();
    let inv = lab.inventory_path();
    let inv = inv.to_str().unwrap();
    // 20 MB on stdout: the JSON report keeps 4 MiB of it and says it was truncated.
    let flood = "head -c 20000000 /dev/zero | tr '\\0' x";
    let run = Edgeops::new().run(&["exec", inv, "--limit", "lab-03", "-o", "json", "--", flood]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.stdout.len() < 5 * 1024 * 1024,
        "{} bytes",
        run.stdout.len()
    );
    let doc: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(doc["truncated"], true);
    assert_eq!(doc["stdout"].as_str().unwrap().len(), 4 * 1024 * 1024);
    let grouped = Edgeops::new().run(&["exec", inv, "--limit", "lab-03", "--group", "--", flood]);
    let out = text(&grouped);
    assert!(grouped.stdout.len() < 5 * 1024 * 1024);
    assert!(
        out.contains("output truncated"),
        "{}",
        &out[out.len().saturating_sub(400)..]
    );
}

#[test]
fn a_host_flooding_the_facts_answer_is_refused_with_the_rest_kept_small() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    // A hostile board: its `uname` answers with 20 MB on one line.
    lab.ssh_ok(
        "lab-03",
        "printf '#!/bin/sh\\nhead -c 20000000 /dev/zero | tr \"\\\\0\" x\\necho\\n' | \
         sudo tee /usr/local/bin/uname >/dev/null && sudo chmod 755 /usr/local/bin/uname",
    );
    let inv = inventory(lab, dir.path(), "lab-03", "");
    let run = edgeops(PASSWORD).run(&["plan", inv.to_str().unwrap()]);
    lab.ssh_ok("lab-03", "sudo rm -f /usr/local/bin/uname");
    let out = text(&run);
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        &out[..out.len().min(2000)]
    );
    assert!(
        out.contains("output truncated"),
        "{}",
        &out[..out.len().min(2000)]
    );
    assert!(out.len() < 64 * 1024, "{} bytes of output", out.len());
}

#[test]
fn verbose_flags_show_each_remote_command_and_colour_only_on_a_terminal() {
    let lab = lab();
    let inv = lab.inventory_path();
    let inv = inv.to_str().unwrap();
    let args = |v: &'static str| -> Vec<&str> {
        let mut args = vec!["exec", inv, "--limit", "lab-03", "--", "echo hi"];
        if !v.is_empty() {
            args.insert(0, v);
        }
        args
    };
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let quiet = Edgeops::new().run(&args(""));
    let v = Edgeops::new().run(&args("-v"));
    let vv = Edgeops::new().run(&args("-vv"));
    for out in [&quiet, &v, &vv] {
        assert_eq!(out.status.code(), Some(0), "{}", text(out));
        // Not a terminal: no colour codes.
        assert!(!text(out).contains('\u{1b}'), "{:?}", text(out));
    }
    assert!(
        !stderr(&quiet).contains("lab-03: $ echo hi"),
        "{}",
        stderr(&quiet)
    );
    assert!(stderr(&v).contains("lab-03: $ echo hi"), "{}", stderr(&v));
    assert!(
        stderr(&v).contains("lab-03: exit 0 after"),
        "{}",
        stderr(&v)
    );
    assert!(!stderr(&v).contains("DEBUG"), "{}", stderr(&v));
    // -vv: also debug lines, the SSH protocol's among them.
    assert!(stderr(&vv).contains("lab-03: $ echo hi"), "{}", stderr(&vv));
    assert!(stderr(&vv).contains("DEBUG"), "{}", stderr(&vv));
    assert!(
        stderr(&vv).lines().count() > stderr(&v).lines().count() + 5,
        "{}",
        stderr(&vv)
    );
    // On a terminal: colour, unless NO_COLOR is set (JSON output: no progress bar, whose
    // cursor movements are not colour).
    let mut on_tty = args("-v");
    on_tty.splice(1..1, ["-o", "json"]);
    let tty = Edgeops::new().run_on_tty(&on_tty, "");
    assert!(text(&tty).contains('\u{1b}'), "{:?}", text(&tty));
    let no_color = Edgeops::new()
        .with_env("NO_COLOR", "1")
        .run_on_tty(&on_tty, "");
    assert!(
        text(&no_color).contains("lab-03: $ echo hi"),
        "{}",
        text(&no_color)
    );
    assert!(!text(&no_color).contains('\u{1b}'), "{:?}", text(&no_color));
}
