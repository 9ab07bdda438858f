//! First contact with fresh boards against the lab's real sshd: `edgeops hostkeys` learns a
//! fleet's host keys (confirmation, expected fingerprints) and refuses a changed key unless told;
//! `edgeops bootstrap` turns password-only hosts into key-and-sudo hosts, and a second run is a
//! no-op.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Edgeops, Lab};

fn all(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lab's inventory with its known_hosts pointed at `known_hosts` (which may not exist).
fn inventory_with_known_hosts(lab: &Lab, dir: &Path, known_hosts: &Path) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let lab_kh = lab.known_hosts_path().display().to_string();
    assert!(
        text.contains(&lab_kh),
        "the lab inventory names its known_hosts"
    );
    let path = dir.join("fleet.toml");
    std::fs::write(
        &path,
        text.replace(&lab_kh, &known_hosts.display().to_string()),
    )
    .unwrap();
    path
}

/// `ssh-keygen -lf FILE`'s fingerprints (the reference edgeops must agree with).
fn keygen_fingerprints(file: &Path) -> Vec<String> {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect()
}

fn sorted_lines(file: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn hostkeys_learns_a_fleet_and_refuses_a_changed_key() {
    let lab = Lab::options(3).sshd_only().start();
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let inv = inventory_with_known_hosts(&lab, dir.path(), &kh);
    let inv = inv.to_str().unwrap();
    let user = Edgeops::new();

    // Strict and nothing recorded: the fleet is refused.
    let out = user.run(&["exec", inv, "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("is not known"), "{}", all(&out));

    // No terminal, no --yes: refused before anything is scanned or written.
    let out = user.run(&["hostkeys", inv]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(!kh.exists());

    // --dry-run prints ssh-keygen's fingerprints, writes nothing.
    let reference = keygen_fingerprints(&lab.known_hosts_path());
    assert_eq!(reference.len(), 3);
    let out = user.run(&["hostkeys", inv, "--dry-run"]);
    assert!(out.status.success(), "{}", all(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    for fp in &reference {
        assert!(stdout.contains(&format!("256 {fp} (ED25519)")), "{stdout}");
    }
    assert!(!kh.exists());

    // A terminal user who answers no: nothing written.
    let out = user.run_on_tty(&["hostkeys", inv], "n\n");
    assert!(all(&out).contains("Record 3 host key(s)"), "{}", all(&out));
    assert!(!kh.exists(), "{}", all(&out));

    // Expected fingerprints for two hosts (as `HOST SHA256:...` and as a keyscan line): those
    // two are recorded, the third is refused for lack of an expected fingerprint.
    let lab_lines = std::fs::read_to_string(lab.known_hosts_path()).unwrap();
    let lab_lines: Vec<&str> = lab_lines.lines().collect();
    let expect = dir.path().join("flashed.txt");
    std::fs::write(
        &expect,
        format!(
            "# collected at flashing time\nlab-01 {}\n{}\n",
            reference[0], lab_lines[1]
        ),
    )
    .unwrap();
    let out = user.run(&["hostkeys", inv, "--expect", expect.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(
        all(&out).contains("lab-03: no expected fingerprint"),
        "{}",
        all(&out)
    );
    assert_eq!(sorted_lines(&kh).len(), 2);

    // --yes records the rest; the file then holds exactly the lab's own lines.
    let out = user.run(&["hostkeys", inv, "--yes"]);
    assert!(out.status.success(), "{}", all(&out));
    let mut lab_sorted: Vec<String> = lab_lines.iter().map(|l| l.to_string()).collect();
    lab_sorted.sort();
    assert_eq!(sorted_lines(&kh), lab_sorted);
    // Twice: nothing new.
    let out = user.run(&["hostkeys", inv, "--yes"]);
    assert!(out.status.success(), "{}", all(&out));
    assert!(all(&out).contains("3 already known"), "{}", all(&out));
    assert_eq!(sorted_lines(&kh), lab_sorted);
    // Strict connections now work.
    let out = user.run(&["exec", inv, "--", "true"]);
    assert!(out.status.success(), "{}", all(&out));

    // lab-02 gets a new host key: refused, file untouched, even with --yes.
    lab.rotate_hostkey("lab-02", false);
    let out = user.run(&["hostkeys", inv, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("HOST KEY CHANGED"), "{}", all(&out));
    assert_eq!(sorted_lines(&kh), lab_sorted);
    // With the explicit flag the old line is replaced by the new key.
    let out = user.run(&["hostkeys", inv, "--yes", "--replace-changed"]);
    assert!(out.status.success(), "{}", all(&out));
    let lines = sorted_lines(&kh);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let lab02 = &lab.host("lab-02").address;
    let scanned = Command::new("ssh-keyscan")
        .args(["-t", "ed25519", lab02])
        .output()
        .unwrap();
    let scanned = String::from_utf8_lossy(&scanned.stdout).trim().to_string();
    assert!(lines.contains(&scanned), "{lines:?} vs {scanned}");
    let out = user.run(&["exec", inv, "--", "true"]);
    assert!(out.status.success(), "{}", all(&out));
}

#[test]
fn bootstrap_turns_password_only_hosts_into_key_and_sudo_hosts() {
    let lab = Lab::options(2).sshd_only().start();
    let password = "fresh-board-7";
    for host in ["lab-01", "lab-02"] {
        // Password logins on, sudo needs the password, and the client key is gone.
        lab.ssh_ok(
            host,
            "sudo sed -i 's/^PasswordAuthentication no/PasswordAuthentication yes/' \
             /etc/ssh/sshd_config.d/lab.conf && sudo kill -HUP 1",
        );
        lab.sudo_password(host, password);
        lab.ssh_ok(host, "rm ~/.ssh/authorized_keys");
    }
    let inv = lab.inventory_path();
    let inv = inv.to_str().unwrap();
    let user = Edgeops::new().with_env("BOARD_PASSWORD", password);

    let out = user.run(&["exec", inv, "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(
        all(&out).contains("authentication as pi failed"),
        "{}",
        all(&out)
    );

    // A world-readable password file is refused before any host is touched.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let out = user.run(&["bootstrap", inv, "--password-file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
    assert!(all(&out).contains("chmod 600"), "{}", all(&out));

    let run = [
        "bootstrap",
        inv,
        "--password-env",
        "BOARD_PASSWORD",
        "--sudo-nopasswd",
    ];
    let out = user.run(&run);
    let text = all(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains(password),
        "the password is never printed: {text}"
    );
    assert!(text.contains("2 host(s): 2 changed"), "{text}");
    assert_eq!(text.matches("key added").count(), 2, "{text}");
    assert_eq!(text.matches("drop-in installed").count(), 2, "{text}");

    // Keys and passwordless sudo now, with the inventory as it is.
    let out = user.run(&["exec", inv, "--sudo", "--", "id", "-u"]);
    assert!(out.status.success(), "{}", all(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches(": 0").count(),
        2,
        "{}",
        all(&out)
    );
    assert_eq!(
        lab.ssh_ok("lab-01", "sudo -n cat /etc/sudoers.d/edgeops-pi"),
        "pi ALL=(ALL:ALL) NOPASSWD: ALL"
    );
    let keys_before = lab.ssh_ok("lab-01", "cat ~/.ssh/authorized_keys");

    // Second run: nothing to do, and says so.
    let out = user.run(&run);
    let text = all(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("2 host(s): 0 changed, 2 nothing to do"),
        "{text}"
    );
    assert_eq!(text.matches("passwordless already").count(), 2, "{text}");
    assert_eq!(
        lab.ssh_ok("lab-01", "cat ~/.ssh/authorized_keys"),
        keys_before
    );
    assert_eq!(keys_before.lines().count(), 1);
}
