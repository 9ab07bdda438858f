//! Lab fleet tests: systemd hosts boot fully, disks are separate and survive stop/start, the
//! written inventory and known_hosts describe the fleet, Pi-like hosts look like Pis.

mod support;

use std::time::Duration;
use support::Lab;

#[test]
fn every_host_boots_systemd_to_running_and_answers_as_itself() {
    let lab = Lab::start(5);
    assert_eq!(lab.hosts().len(), 5);
    for host in lab.hosts() {
        let state = lab.ssh_ok(&host.name, "sudo systemctl is-system-running --wait");
        assert_eq!(
            state, "running",
            "{}: systemctl is-system-running",
            host.name
        );
        assert_eq!(lab.ssh_ok(&host.name, "hostname"), host.name);
        assert_eq!(lab.ssh_ok(&host.name, "id -un"), "pi");
        assert_eq!(lab.ssh_ok(&host.name, "cat /etc/resolv.conf"), "");
        assert!(
            lab.ssh_ok(&host.name, "cat /etc/hosts")
                .contains(&format!("127.0.1.1\t{}", host.name))
        );
    }
    let mut machine_ids: Vec<String> = lab
        .hosts()
        .iter()
        .map(|h| lab.ssh_ok(&h.name, "cat /etc/machine-id"))
        .collect();
    machine_ids.sort();
    machine_ids.dedup();
    assert_eq!(
        machine_ids.len(),
        5,
        "machine-ids must differ between hosts"
    );
}

#[test]
fn root_cannot_log_in_and_inventory_lists_the_fleet() {
    let lab = Lab::start(3);
    let h = lab.host("lab-01");
    let root = std::process::Command::new("ssh")
        .args(lab.ssh_args())
        .arg(format!("root@{}", h.address))
        .arg("true")
        .output()
        .unwrap();
    assert!(!root.status.success(), "root login must be refused");

    let inventory = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let net = format!("10.{}.0", 244 + u32::from(lab.id()));
    assert!(
        inventory.contains(&format!(
            "name = \"lab-01\"\naddress = \"{net}.11\"\nrole = \"server\""
        )),
        "{inventory}"
    );
    assert!(
        inventory.contains(&format!(
            "name = \"lab-[02-03]\"\naddress = \"{net}.[12-13]\"\nrole = \"agent\""
        )),
        "{inventory}"
    );
    assert!(inventory.contains(&format!(
        "identity_files = [\"{}\"]",
        lab.key_path().display()
    )));
    let known = std::fs::read_to_string(lab.known_hosts_path()).unwrap();
    for host in lab.hosts() {
        assert!(
            known
                .lines()
                .any(|l| l.starts_with(&format!("{} ssh-ed25519 ", host.address))),
            "{known}"
        );
    }
}

#[test]
fn disks_are_separate_and_survive_stop_and_start() {
    let lab = Lab::start(2);
    lab.ssh_ok(
        "lab-01",
        "echo kept-across-boots > ~/marker && sudo sh -c 'echo root-side > /etc/marker'",
    );
    let missing = lab.ssh("lab-02", "cat ~/marker /etc/marker");
    assert!(
        !missing.status.success(),
        "lab-02 must not see lab-01's files"
    );

    let boot = lab.boot_id("lab-01");
    lab.stop("lab-01");
    let refused = lab.ssh_with("lab-01", &["-o", "ConnectTimeout=3"], "true");
    assert!(!refused.status.success(), "a stopped host must not answer");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    lab.start_host("lab-01");
    assert_eq!(
        lab.ssh_ok("lab-01", "cat ~/marker /etc/marker"),
        "kept-across-boots\nroot-side"
    );
    assert_ne!(lab.boot_id("lab-01"), boot, "a start is a new boot");
}

#[test]
fn reboot_from_inside_and_from_the_lab_gives_a_new_boot_with_the_same_disk() {
    let lab = Lab::start(1);
    lab.ssh_ok("lab-01", "echo before-reboot > ~/marker");
    let first = lab.boot_id("lab-01");
    // What a provisioning tool does: ask the host to reboot, then reconnect.
    let _ = lab.ssh("lab-01", "sudo systemctl reboot");
    let second = lab.wait_for_new_boot("lab-01", &first, Duration::from_secs(120));
    assert_eq!(lab.ssh_ok("lab-01", "cat ~/marker"), "before-reboot");
    assert_eq!(lab.ssh_ok("lab-01", "cat /run/lab/boot_id"), second);

    lab.reboot("lab-01");
    assert_ne!(lab.boot_id("lab-01"), second);
    assert_eq!(
        lab.ssh_ok("lab-01", "sudo systemctl is-system-running --wait"),
        "running"
    );
}

#[test]
fn pi_hosts_show_the_files_a_pi_has_and_report_their_arch() {
    let lab = Lab::options(3).pi(1).arch("aarch64").arch("armv7l").start();
    let pi = lab.host("lab-01");
    assert!(pi.pi);
    let model = lab.ssh_ok(
        "lab-01",
        "tr -d '\\0' < /sys/firmware/devicetree/base/model",
    );
    assert!(model.starts_with("Raspberry Pi"), "{model}");
    let cmdline = lab.ssh_ok("lab-01", "cat /boot/firmware/cmdline.txt");
    assert_eq!(cmdline.lines().count(), 1, "{cmdline}");
    assert!(
        cmdline.contains("rootwait") && !cmdline.contains("cgroup"),
        "{cmdline}"
    );
    assert!(
        lab.ssh_ok("lab-01", "cat /etc/rpi-issue")
            .contains("Raspberry Pi reference")
    );
    assert_eq!(lab.ssh_ok("lab-01", "uname -m"), "aarch64");
    assert_eq!(lab.ssh_ok("lab-02", "uname -m"), "armv7l");
    assert!(
        lab.ssh("lab-02", "test -e /boot/firmware/cmdline.txt")
            .status
            .code()
            == Some(1)
    );

    // The preflight's fix: edit cmdline.txt, reboot, reconnect; the edit must survive.
    let boot = lab.boot_id("lab-01");
    lab.ssh_ok(
        "lab-01",
        "sudo sed -i '1 s/$/ cgroup_memory=1 cgroup_enable=memory/' /boot/firmware/cmdline.txt",
    );
    let _ = lab.ssh("lab-01", "sudo reboot");
    lab.wait_for_new_boot("lab-01", &boot, Duration::from_secs(120));
    assert!(
        lab.ssh_ok("lab-01", "cat /boot/firmware/cmdline.txt")
            .ends_with("cgroup_memory=1 cgroup_enable=memory")
    );
}

#[test]
fn sshd_only_hosts_answer_ssh() {
    let lab = Lab::options(3).sshd_only().start();
    for host in lab.hosts() {
        assert_eq!(host.mode, "sshd");
        assert_eq!(lab.ssh_ok(&host.name, "sudo -n id -un"), "root");
    }
}
