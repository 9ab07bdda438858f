//! Test support: gives an integration test a running lab fleet (scripts/lab) under its own lab
//! id, and tears it down on drop, also when the test panics.
//!
//! Use from a test crate with `mod support;` and `let lab = support::Lab::start(3);`.
#![allow(dead_code)] // each test crate uses a different part of this module

mod edgeops;
mod ids;
mod inventory;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::sleep;
use std::time::{Duration, Instant};

#[allow(unused_imports)] // only the crates that run edgeops use it
pub use edgeops::Edgeops;
pub use ids::LabId;
#[allow(unused_imports)] // only the crates that name the builder's type use it
pub use inventory::LabInventory;

/// One host of a running lab, as a client reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub user: String,
    pub mode: String,
    pub pi: bool,
    pub arch: Option<String>,
}

/// What kind of fleet to start (see `Lab::options`).
#[derive(Debug, Clone)]
pub struct LabOptions {
    hosts: usize,
    sshd_only: bool,
    pi: usize,
    arch: Vec<String>,
}

impl LabOptions {
    /// Hosts with sshd as PID 1 instead of systemd (lighter; no services, no reboot from inside).
    pub fn sshd_only(mut self) -> Self {
        self.sshd_only = true;
        self
    }

    /// The first `k` hosts look like Raspberry Pis (model, cmdline.txt, rpi-issue, aarch64).
    pub fn pi(mut self, k: usize) -> Self {
        self.pi = k;
        self
    }

    /// Architectures `uname -m` reports, assigned to the hosts in turn.
    pub fn arch(mut self, arch: &str) -> Self {
        self.arch.push(arch.to_string());
        self
    }

    pub fn start(self) -> Lab {
        Lab::start_with(self)
    }
}

/// A running lab fleet owned by one test. Dropping it runs `scripts/lab down`.
pub struct Lab {
    id: LabId,
    repo: PathBuf,
    hosts: Vec<Host>,
}

impl Lab {
    /// Starts `n` systemd hosts (lab-01..).
    pub fn start(n: usize) -> Lab {
        Lab::options(n).start()
    }

    pub fn options(n: usize) -> LabOptions {
        LabOptions {
            hosts: n,
            sshd_only: false,
            pi: 0,
            arch: Vec::new(),
        }
    }

    fn start_with(opts: LabOptions) -> Lab {
        check_prerequisites();
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let id = LabId::acquire(&repo);
        // From here on Drop tears the lab down, whatever happens below.
        let mut lab = Lab {
            id,
            repo,
            hosts: Vec::new(),
        };
        let mut args = vec!["up".to_string(), opts.hosts.to_string()];
        if opts.sshd_only {
            args.push("--sshd-only".into());
        }
        if opts.pi > 0 {
            args.extend(["--pi".into(), opts.pi.to_string()]);
        }
        if !opts.arch.is_empty() {
            args.extend(["--arch".into(), opts.arch.join(",")]);
        }
        let out = lab.run_lab(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "the lab could not start (scripts/lab {}): {}\n(the lab needs root, network namespaces, \
             overlayfs and a debootstrap-able Debian mirror; see docs/LAB.md)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        lab.hosts = lab.read_hosts();
        lab
    }

    pub fn id(&self) -> u8 {
        self.id.number()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.repo.join("lab/state").join(self.id().to_string())
    }

    pub fn key_path(&self) -> PathBuf {
        self.state_dir().join("id_ed25519")
    }

    pub fn known_hosts_path(&self) -> PathBuf {
        self.state_dir().join("known_hosts")
    }

    pub fn inventory_path(&self) -> PathBuf {
        if self.id() == 0 {
            self.repo.join("inventory/lab.toml")
        } else {
            self.state_dir().join("lab.toml")
        }
    }

    /// The address of the lab bridge, where the k3s mirror listens on port 8080.
    pub fn bridge_address(&self) -> String {
        format!("10.{}.0.1", 244 + u32::from(self.id()))
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in lab {}", self.id()))
    }

    /// Runs `cmd` on `host` with the system ssh client, the lab key, strict known_hosts and
    /// BatchMode.
    pub fn ssh(&self, host: &str, cmd: &str) -> Output {
        self.ssh_with(host, &[], cmd)
    }

    /// Like `ssh`, with extra ssh options (e.g. `["-o", "ConnectTimeout=3"]`).
    pub fn ssh_with(&self, host: &str, extra: &[&str], cmd: &str) -> Output {
        let h = self.host(host);
        Command::new("ssh")
            .args(self.ssh_args())
            .args(extra)
            .arg(format!("{}@{}", h.user, h.address))
            .arg(cmd)
            .output()
            .expect("run ssh")
    }

    /// `ssh` that must succeed; returns trimmed stdout.
    pub fn ssh_ok(&self, host: &str, cmd: &str) -> String {
        let out = self.ssh(host, cmd);
        assert!(
            out.status.success(),
            "ssh {host} {cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.key_path().display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts_path().display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
        ]
    }

    /// The host's current boot id as a client reads it (changes on every lab reboot).
    pub fn boot_id(&self, host: &str) -> String {
        self.ssh_ok(host, "cat /proc/sys/kernel/random/boot_id")
    }

    /// Polls until `host` answers with a boot id other than `old` (after a reboot).
    pub fn wait_for_new_boot(&self, host: &str, old: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let out = self.ssh_with(
                host,
                &["-o", "ConnectTimeout=3"],
                "cat /proc/sys/kernel/random/boot_id",
            );
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !id.is_empty() && id != old {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "{host} did not come back with a new boot id within {within:?}"
            );
            sleep(Duration::from_millis(300));
        }
    }

    /// Runs `scripts/lab ARGS` for this lab id.
    pub fn run_lab(&self, args: &[&str]) -> Output {
        Command::new(self.repo.join("scripts/lab"))
            .args(args)
            .env("EDGEOPS_LAB_ID", self.id().to_string())
            .output()
            .expect("run scripts/lab")
    }

    fn knob(&self, args: &[&str]) {
        let out = self.run_lab(args);
        assert!(
            out.status.success(),
            "scripts/lab {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self, host: &str) {
        self.knob(&["stop", host]);
    }
    pub fn start_host(&self, host: &str) {
        self.knob(&["start", host]);
    }
    pub fn reboot(&self, host: &str) {
        self.knob(&["reboot", host]);
    }
    pub fn link_down(&self, host: &str) {
        self.knob(&["link-down", host]);
    }
    pub fn link_up(&self, host: &str) {
        self.knob(&["link-up", host]);
    }
    pub fn freeze(&self, host: &str) {
        self.knob(&["freeze", host]);
    }
    pub fn thaw(&self, host: &str) {
        self.knob(&["thaw", host]);
    }
    /// New host key; `update_known_hosts` decides whether the lab's known_hosts follows it.
    pub fn rotate_hostkey(&self, host: &str, update_known_hosts: bool) {
        if update_known_hosts {
            self.knob(&["rotate-hostkey", host, "--update-known-hosts"]);
        } else {
            self.knob(&["rotate-hostkey", host]);
        }
    }
    pub fn sudo_password(&self, host: &str, password: &str) {
        self.knob(&["sudo-password", host, password]);
    }
    pub fn sudo_nopasswd(&self, host: &str) {
        self.knob(&["sudo-nopasswd", host]);
    }
    /// Adds `ms` of delay in each direction of the host's port 22 (2*ms per round trip).
    pub fn delay(&self, host: &str, ms: u32) {
        self.knob(&["delay", host, &ms.to_string()]);
    }
    pub fn undelay(&self, host: &str) {
        self.knob(&["undelay", host]);
    }
    pub fn mirror_cut(&self, host: &str) {
        self.knob(&["mirror-cut", host]);
    }
    pub fn mirror_restore(&self, host: &str) {
        self.knob(&["mirror-restore", host]);
    }
    pub fn k3s_fault(&self, host: &str, knob: &str, value: &str) {
        self.knob(&["k3s-fault", host, knob, value]);
    }
    pub fn k3s_fault_clear(&self, host: &str) {
        self.knob(&["k3s-fault", host, "--clear"]);
    }

    fn read_hosts(&self) -> Vec<Host> {
        let tsv = self.state_dir().join("hosts.tsv");
        let text =
            fs::read_to_string(&tsv).unwrap_or_else(|e| panic!("read {}: {e}", tsv.display()));
        text.lines().map(parse_host_line).collect()
    }
}

impl Lab {
    /// Tear the lab down from an exit handler (labs shared through a static are never dropped)
    /// and give up the lab id's owner marker.
    pub fn down_at_exit(&self) {
        let out = self.run_lab(&["down"]);
        if !out.status.success() {
            eprintln!(
                "lab {} teardown failed: {}",
                self.id(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.id.release_marker();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.run_lab(&["down"]);
        if !out.status.success() {
            eprintln!(
                "lab {} teardown failed: {}",
                self.id(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// One line of lab/state/<ID>/hosts.tsv: name, address, mode, pi|-, arch|-.
fn parse_host_line(line: &str) -> Host {
    let f: Vec<&str> = line.split('\t').collect();
    assert!(f.len() >= 5, "bad hosts.tsv line {line:?}");
    Host {
        name: f[0].to_string(),
        address: f[1].to_string(),
        user: "pi".to_string(),
        mode: f[2].to_string(),
        pi: f[3] == "pi",
        arch: (f[4] != "-").then(|| f[4].to_string()),
    }
}

fn check_prerequisites() {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    assert!(
        String::from_utf8_lossy(&uid.stdout).trim() == "0",
        "the lab tests need root (network namespaces, overlayfs, cgroups): run them as root"
    );
    for tool in ["ssh", "ip", "nsenter", "unshare"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "the lab tests need `{tool}` on PATH (scripts/lab build installs the host packages)"
        );
    }
    assert!(
        Path::new("/proc/self/ns/net").exists(),
        "the lab needs network namespaces"
    );
}
