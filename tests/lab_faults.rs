//! Lab fault knobs, each shown as an ssh client sees it: link cut, freeze, host key rotation,
//! sudo password, port-22 delay, mirror cut and the k3s simulator's fault files.

mod support;

use std::time::Instant;
use support::Lab;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

const QUICK: &[&str] = &["-o", "ConnectTimeout=3"];

#[test]
fn link_down_makes_the_host_unreachable_until_link_up() {
    let lab = Lab::start(1);
    lab.link_down("lab-01");
    let out = lab.ssh_with("lab-01", QUICK, "true");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("timed out") || err.contains("No route to host"),
        "{err}"
    );
    lab.link_up("lab-01");
    assert_eq!(lab.ssh_ok("lab-01", "echo back"), "back");
}

#[test]
fn a_frozen_host_accepts_tcp_but_never_answers() {
    let lab = Lab::start(1);
    lab.freeze("lab-01");
    let out = lab.ssh_with("lab-01", QUICK, "true");
    assert!(!out.status.success());
    // The TCP handshake completes (the kernel answers), the SSH banner never comes.
    assert!(stderr(&out).contains("banner exchange"), "{}", stderr(&out));
    lab.thaw("lab-01");
    assert_eq!(lab.ssh_ok("lab-01", "echo thawed"), "thawed");
}

#[test]
fn a_rotated_host_key_is_refused_by_strict_clients() {
    let lab = Lab::start(1);
    lab.rotate_hostkey("lab-01", false);
    let out = lab.ssh("lab-01", "true");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Host key verification failed"),
        "{}",
        stderr(&out)
    );
    lab.rotate_hostkey("lab-01", true);
    assert_eq!(lab.ssh_ok("lab-01", "echo trusted"), "trusted");
}

#[test]
fn sudo_can_be_made_to_need_a_password() {
    let lab = Lab::start(1);
    lab.sudo_password("lab-01", "lab-secret");
    let out = lab.ssh("lab-01", "sudo -n true");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("password is required"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        lab.ssh_ok("lab-01", "echo lab-secret | sudo -S -p '' id -un"),
        "root"
    );
    lab.sudo_nopasswd("lab-01");
    assert_eq!(lab.ssh_ok("lab-01", "sudo -n id -un"), "root");
}

#[test]
fn delay_routes_port_22_through_the_delay_proxy() {
    let lab = Lab::options(1).sshd_only().start();
    let bridge = lab.bridge_address();
    let direct = lab.ssh_ok("lab-01", "echo $SSH_CONNECTION");
    assert!(direct.starts_with(&format!("{bridge} ")), "{direct}");

    lab.delay("lab-01", 250);
    // sshd now sees the proxy (inside the host) as its client.
    let started = Instant::now();
    let proxied = lab.ssh_ok("lab-01", "echo $SSH_CONNECTION");
    let took = started.elapsed();
    assert!(proxied.starts_with("127.0.0.1 "), "{proxied}");
    // A lower bound only (never flaky): an SSH session needs several round trips, and each one
    // now carries at least 2 x 250 ms.
    assert!(
        took.as_millis() >= 1000,
        "a delayed ssh session took only {took:?}"
    );

    lab.undelay("lab-01");
    let direct_again = lab.ssh_ok("lab-01", "echo $SSH_CONNECTION");
    assert!(
        direct_again.starts_with(&format!("{bridge} ")),
        "{direct_again}"
    );
}

#[test]
fn mirror_cut_blocks_the_mirror_port_only() {
    let lab = Lab::start(1);
    // errno 113 is EHOSTUNREACH: what an air-gapped host gets; anything else means the path is open
    // (connected when the mirror runs, refused when it does not).
    let probe = format!(
        "python3 -c 'import socket\ntry:\n socket.create_connection((\"{}\", 8080), 3); print(0)\nexcept OSError as e:\n print(e.errno)'",
        lab.bridge_address()
    );
    assert_ne!(lab.ssh_ok("lab-01", &probe), "113");
    lab.mirror_cut("lab-01");
    assert_eq!(lab.ssh_ok("lab-01", &probe), "113");
    assert_eq!(
        lab.ssh_ok("lab-01", "echo ssh-still-works"),
        "ssh-still-works"
    );
    lab.mirror_restore("lab-01");
    assert_ne!(lab.ssh_ok("lab-01", &probe), "113");
}

#[test]
fn k3s_fault_files_appear_inside_the_host_and_clear() {
    let lab = Lab::start(1);
    lab.k3s_fault("lab-01", "crashloop", "3");
    lab.k3s_fault("lab-01", "never-ready", "");
    assert_eq!(
        lab.ssh_ok("lab-01", "cat /etc/k3s-sim/faults/crashloop"),
        "3"
    );
    assert_eq!(
        lab.ssh_ok("lab-01", "ls /etc/k3s-sim/faults"),
        "crashloop\nnever-ready"
    );
    lab.k3s_fault_clear("lab-01");
    assert!(
        !lab.ssh("lab-01", "test -e /etc/k3s-sim/faults/crashloop")
            .status
            .success()
    );
}
