//! scripts/vagrant-inventory: `vagrant ssh-config` outputs (VirtualBox, libvirt, a quoted path
//! with a space, and one captured from a real `vagrant up --provider=libvirt` with Vagrant 2.3.4,
//! see docs/VAGRANT.md) become the expected inventories, and `edgeops check` accepts them.
//!
//! The fixtures hold the paths of the checkout they came from (`/home/alice/...`); each test
//! moves them into a temporary folder where it creates the private keys, because
//! `edgeops check` insists that identity files exist.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const GENERATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/vagrant-inventory");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vagrant");
/// The vagrant/ folder of the checkout the fixtures were captured in.
const ALICE_LINUX: &str = "/home/alice/src/edgeops/vagrant";
const ALICE_MAC: &str = "/Users/Alice Doe/src/edgeops/vagrant";
/// The vagrant/ folder of the KVM proof run (scripts/vagrant-kvm-proof) the capture comes from.
const PROOF_RUN: &str = "/work/wt-vagrant/vagrant";

fn fixture(name: &str) -> String {
    fs::read_to_string(Path::new(FIXTURES).join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Runs the generator with `stdin` as the ssh-config text (`-`), plus `args`.
fn generate(stdin: &str, args: &[&str]) -> Output {
    let mut child = Command::new("python3")
        .arg(GENERATOR)
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to run scripts/vagrant-inventory (apt-get install python3)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn edgeops_check(inventory: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeops"))
        .arg("check")
        .arg(inventory)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A checkout of the project in a temporary folder: `vagrant_dir` replaces the fixture's.
struct Checkout {
    _tmp: tempfile::TempDir,
    vagrant_dir: PathBuf,
    inventory: PathBuf,
}

impl Checkout {
    /// `parent` is a sub-path of the temporary folder, to reproduce spaces in real paths.
    fn new(parent: &str) -> Checkout {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(parent);
        let vagrant_dir = root.join("vagrant");
        fs::create_dir_all(root.join("inventory")).unwrap();
        fs::create_dir_all(&vagrant_dir).unwrap();
        Checkout {
            inventory: root.join("inventory/vagrant.toml"),
            vagrant_dir,
            _tmp: tmp,
        }
    }

    fn vagrant_dir(&self) -> &str {
        self.vagrant_dir.to_str().unwrap()
    }

    /// Creates the private key Vagrant would have made for this machine and provider.
    fn create_key(&self, machine: &str, provider: &str) {
        let dir = self
            .vagrant_dir
            .join(".vagrant/machines")
            .join(machine)
            .join(provider);
        fs::create_dir_all(&dir).unwrap();
        // A real key, as Vagrant makes: `check` parses identity files.
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join("private_key"))
            .status()
            .unwrap();
        assert!(made.success());
    }

    /// Runs the generator on a fixture moved into this checkout, writes inventory/vagrant.toml.
    fn generate(&self, fixture_name: &str, fixture_dir: &str, args: &[&str]) -> String {
        let input = fixture(fixture_name).replace(fixture_dir, self.vagrant_dir());
        let mut all_args = vec!["--vagrant-dir", self.vagrant_dir()];
        all_args.extend_from_slice(args);
        let out = generate(&input, &all_args);
        assert!(
            out.status.success(),
            "generator failed: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "no warnings when every key exists");
        let inventory = text(&out.stdout);
        fs::write(&self.inventory, &inventory).unwrap();
        inventory
    }

    fn assert_check_passes(&self, summary: &str) {
        let out = edgeops_check(&self.inventory);
        assert!(
            out.status.success(),
            "edgeops check rejected the generated inventory:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains(summary),
            "expected `{summary}` in:\n{}",
            text(&out.stdout)
        );
    }
}

const THREE_MACHINES: [&str; 3] = ["server", "agent-1", "agent-2"];

#[test]
fn virtualbox_ssh_config_becomes_forwarded_ports_on_loopback() {
    let checkout = Checkout::new("src/edgeops");
    for machine in THREE_MACHINES {
        checkout.create_key(machine, "virtualbox");
    }
    let inventory = checkout.generate("virtualbox.ssh-config", ALICE_LINUX, &[]);
    let expected =
        fixture("virtualbox.inventory.toml").replace(ALICE_LINUX, checkout.vagrant_dir());
    assert_eq!(inventory, expected);
    checkout.assert_check_passes("3 hosts (1 server, 2 agents)");
}

#[test]
fn libvirt_ssh_config_becomes_the_vms_own_addresses() {
    let checkout = Checkout::new("src/edgeops");
    for machine in THREE_MACHINES {
        checkout.create_key(machine, "libvirt");
    }
    let inventory = checkout.generate("libvirt.ssh-config", ALICE_LINUX, &[]);
    let expected = fixture("libvirt.inventory.toml").replace(ALICE_LINUX, checkout.vagrant_dir());
    assert_eq!(inventory, expected);
    checkout.assert_check_passes("3 hosts (1 server, 2 agents)");
}

#[test]
fn ssh_config_captured_from_a_real_libvirt_run() {
    let checkout = Checkout::new("src/edgeops");
    for machine in ["server", "agent-1"] {
        checkout.create_key(machine, "libvirt");
    }
    let inventory = checkout.generate("libvirt-captured.ssh-config", PROOF_RUN, &[]);
    let expected =
        fixture("libvirt-captured.inventory.toml").replace(PROOF_RUN, checkout.vagrant_dir());
    assert_eq!(inventory, expected);
    checkout.assert_check_passes("2 hosts (1 server, 1 agent)");
}

#[test]
fn other_ssh_config_keywords_and_key_value_syntax_are_accepted() {
    let checkout = Checkout::new("src/edgeops");
    checkout.create_key("server", "virtualbox");
    // Newer Vagrant releases and plugins add keywords; `Keyword=value` is valid ssh_config too.
    let input = format!(
        "# vagrant ssh-config\nHost server\n  hostname=127.0.0.1\n  User vagrant\n  Port 2222\n  \
         PubkeyAcceptedKeyTypes +ssh-rsa\n  HostKeyAlgorithms +ssh-rsa\n  ForwardAgent yes\n  \
         IdentityFile {ALICE_LINUX}/.vagrant/machines/server/virtualbox/private_key\n"
    );
    let out = generate(
        &input.replace(ALICE_LINUX, checkout.vagrant_dir()),
        &["--vagrant-dir", checkout.vagrant_dir()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let parsed: toml::Table = toml::from_str(&text(&out.stdout)).unwrap();
    let host = &parsed["hosts"][0];
    assert_eq!(host["address"].as_str(), Some("127.0.0.1"));
    assert_eq!(host["ssh"]["port"].as_integer(), Some(2222));
    fs::write(&checkout.inventory, &out.stdout).unwrap();
    checkout.assert_check_passes("1 host");
}

#[test]
fn quoted_key_paths_with_spaces_survive() {
    let checkout = Checkout::new("Alice Doe/src/edgeops");
    for machine in ["server", "agent-1"] {
        checkout.create_key(machine, "virtualbox");
    }
    let inventory = checkout.generate("virtualbox-space.ssh-config", ALICE_MAC, &[]);
    let expected =
        fixture("virtualbox-space.inventory.toml").replace(ALICE_MAC, checkout.vagrant_dir());
    assert_eq!(inventory, expected);
    assert!(inventory.contains("Alice Doe/src/edgeops/vagrant/.vagrant/machines/server"));
    checkout.assert_check_passes("2 hosts (1 server, 1 agent)");
}

#[test]
fn network_and_interface_options_follow_the_vagrantfile_settings() {
    let checkout = Checkout::new("src/edgeops");
    for machine in THREE_MACHINES {
        checkout.create_key(machine, "libvirt");
    }
    let inventory = checkout.generate(
        "libvirt.ssh-config",
        ALICE_LINUX,
        &[
            "--network",
            "10.20.30",
            "--flannel-iface",
            "",
            "--cluster-name",
            "try-vms",
        ],
    );
    let parsed: toml::Table = toml::from_str(&inventory).unwrap();
    assert_eq!(parsed["cluster"]["name"].as_str(), Some("try-vms"));
    assert_eq!(
        parsed["cluster"]["api_endpoint"].as_str(),
        Some("10.20.30.10")
    );
    let args: Vec<Vec<&str>> = parsed["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|host| {
            host["extra_args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        args,
        [
            ["--node-ip=10.20.30.10"],
            ["--node-ip=10.20.30.11"],
            ["--node-ip=10.20.30.12"]
        ]
    );
    // The known_hosts folder exists for edgeops to write learned keys into.
    assert!(checkout.vagrant_dir.join(".edgeops").is_dir());
    checkout.assert_check_passes("3 hosts (1 server, 2 agents)");
}

#[test]
fn a_missing_key_is_warned_about_and_check_refuses_it() {
    let checkout = Checkout::new("src/edgeops");
    checkout.create_key("server", "virtualbox");
    checkout.create_key("agent-1", "virtualbox");
    let input = fixture("virtualbox.ssh-config").replace(ALICE_LINUX, checkout.vagrant_dir());
    let out = generate(&input, &["--vagrant-dir", checkout.vagrant_dir()]);
    assert!(out.status.success());
    let warning = text(&out.stderr);
    assert!(
        warning.contains("agent-2: key ") && warning.contains("does not exist"),
        "{warning}"
    );
    fs::write(&checkout.inventory, &out.stdout).unwrap();
    let check = edgeops_check(&checkout.inventory);
    assert_eq!(check.status.code(), Some(2));
    assert!(
        text(&check.stderr).contains("machines/agent-2/virtualbox/private_key"),
        "{}",
        text(&check.stderr)
    );
}

#[test]
fn unusable_input_fails_with_a_reason_and_no_inventory() {
    let proxied = "Host server\n  HostName 192.168.121.5\n  User vagrant\n  Port 22\n  \
                   IdentityFile /k/.vagrant/machines/server/libvirt/private_key\n  \
                   ProxyCommand ssh 'kvm-host' -l 'me' nc %h %p\n";
    let no_key = "Host server\n  HostName 127.0.0.1\n  User vagrant\n  Port 2222\n";
    let bad_port = "Host server\n  HostName 127.0.0.1\n  User vagrant\n  Port 99999\n  \
                    IdentityFile /k\n";
    for (input, reason) in [
        ("", "no `Host` blocks"),
        (proxied, "ProxyCommand"),
        (no_key, "no IdentityFile line"),
        (bad_port, "port '99999' is not a TCP port"),
        ("  HostName 127.0.0.1\n", "before any `Host` line"),
    ] {
        let out = generate(input, &["--known-hosts", "/nonexistent/known_hosts"]);
        assert_eq!(out.status.code(), Some(2), "input {input:?}");
        assert!(
            text(&out.stderr).contains(reason),
            "expected {reason:?} in {:?}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "no partial inventory for {input:?}");
    }
}

#[test]
fn mirror_option_points_installer_channels_and_downloads_at_one_mirror() {
    let checkout = Checkout::new("src/edgeops");
    for machine in THREE_MACHINES {
        checkout.create_key(machine, "libvirt");
    }
    // A trailing slash is not doubled; the layout is lab/k3s-sim/mirror.py's (docs/K3S-SIM.md).
    let inventory = checkout.generate(
        "libvirt.ssh-config",
        ALICE_LINUX,
        &["--mirror", "http://192.168.56.1:8080/"],
    );
    let parsed: toml::Table = toml::from_str(&inventory).unwrap();
    let cluster = &parsed["cluster"];
    assert_eq!(
        cluster["install_url"].as_str(),
        Some("http://192.168.56.1:8080/install.sh")
    );
    assert_eq!(
        cluster["channel_url"].as_str(),
        Some("http://192.168.56.1:8080/v1-release/channels")
    );
    assert_eq!(
        cluster["download_url"].as_str(),
        Some("http://192.168.56.1:8080/k3s-io/k3s/releases")
    );
    checkout.assert_check_passes("3 hosts (1 server, 2 agents)");

    // Without --mirror: no URL keys (edgeops's defaults, get.k3s.io and GitHub).
    let plain = checkout.generate("libvirt.ssh-config", ALICE_LINUX, &[]);
    assert!(!plain.contains("_url"), "{plain}");

    for bad in ["ftp://mirror", "192.168.56.1:8080", "http://a b"] {
        let out = generate("", &["--mirror", bad]);
        assert_eq!(out.status.code(), Some(2), "--mirror {bad}");
        assert!(
            text(&out.stderr).contains("is not an http(s) URL"),
            "{}",
            text(&out.stderr)
        );
    }
}
