//! ssh and fleet against the lab's real hosts (network namespaces with their own sshd, user `pi`
//! with sudo): sudo with a password, sudo upload to a root-owned path, a host rebooted mid-run
//! is reconnected, a frozen host times out while the others succeed, a host behind the delay
//! proxy. Each test owns a lab (tests/support `Lab`), torn down when the test ends.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edgeops::commands::exec::{SshSetup, ssh_setup};
use edgeops::fleet::{Fleet, FleetSettings, HostError, Silent};
use edgeops::ssh::{ConnectOptions, ExecRequest, Session, SshContext, SshError, SudoMode};
use secrecy::SecretString;
use support::Lab;

/// A lab of `n` sshd-only hosts (its own lab id; torn down when dropped).
fn lab(n: usize) -> Lab {
    Lab::options(n).sshd_only().start()
}

/// The SSH setup edgeops would build from the lab's inventory, for `names`.
fn setup(inventory: &Path, names: &[&str]) -> SshSetup {
    let inv = edgeops::inventory::load(inventory).expect("the lab inventory loads");
    let hosts: Vec<_> = inv
        .hosts
        .iter()
        .filter(|h| names.contains(&h.name.as_str()))
        .collect();
    assert_eq!(hosts.len(), names.len(), "lab hosts {names:?}");
    ssh_setup(&hosts, false).unwrap()
}

fn target(setup: &SshSetup, name: &str) -> ConnectOptions {
    setup
        .targets
        .iter()
        .find(|t| t.name == name)
        .unwrap()
        .clone()
}

async fn connect(opts: ConnectOptions, ctx: SshContext) -> Session {
    Session::connect(opts, ctx).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sudo_with_a_password_fed_on_stdin_and_upload_to_a_root_owned_path() {
    let lab = lab(1);
    let s = setup(&lab.inventory_path(), &["lab-01"]);
    lab.sudo_password("lab-01", "correct horse");
    let mut opts = target(&s, "lab-01");

    opts.sudo = SudoMode::Passwordless;
    let session = connect(opts.clone(), s.ctx.clone()).await;
    let out = session
        .exec(&ExecRequest::new("id -u").sudo(true))
        .await
        .unwrap();
    assert!(
        !out.success(),
        "sudo -n must fail when a password is required"
    );

    opts.sudo = SudoMode::Password(SecretString::from("correct horse"));
    let session = connect(opts.clone(), s.ctx.clone()).await;
    let out = session
        .exec(
            &ExecRequest::new("id -u; ps -eo args | grep -c '[c]orrect horse' || true").sudo(true),
        )
        .await
        .unwrap();
    assert!(out.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Root, and the password appears on no command line.
    assert_eq!(out.stdout_lossy(), "0\n0\n");

    session
        .upload(
            b"token: s3cret\n",
            "/etc/edgeops-test.conf",
            0o600,
            Some("root:root"),
            true,
        )
        .await
        .unwrap();
    let out = session
        .exec(
            &ExecRequest::new("stat -c '%a %U' /etc/edgeops-test.conf; cat /etc/edgeops-test.conf")
                .sudo(true),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), "600 root\ntoken: s3cret\n");

    opts.sudo = SudoMode::Password(SecretString::from("wrong"));
    let session = connect(opts, s.ctx.clone()).await;
    let err = session
        .exec(&ExecRequest::new("id -u").sudo(true))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SshError::SudoRefused { .. }),
        "a wrong sudo password must fail: {err}"
    );

    // A password with a line break would leave its tail in the command's data: never sent.
    let mut opts = target(&s, "lab-01");
    opts.sudo = SudoMode::Password(SecretString::from("correct horse\ncat"));
    let session = connect(opts, s.ctx.clone()).await;
    let err = session.check_sudo().await.unwrap_err();
    assert!(err.to_string().contains("line break"), "{err}");
}

/// A cancelled or timed-out command is stopped with everything it started: also a grandchild
/// that left the tree (its parent exited), with and without sudo.
#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_command_is_stopped_with_its_grandchildren() {
    let lab = lab(1);
    let s = setup(&lab.inventory_path(), &["lab-01"]);
    let mut opts = target(&s, "lab-01");
    opts.sudo = SudoMode::Passwordless;
    let session = connect(opts, s.ctx.clone()).await;
    for sudo in [false, true] {
        let marker = format!("edgeops-grandchild-{sudo}");
        // The inner shell starts `( sleep; : marker )` in the background and exits at once:
        // the subshell is an orphan, no longer anybody's descendant in the command's tree.
        let command = format!("sh -c '(sleep 300; : {marker}) &'; sleep 300");
        let err = session
            .exec(
                &ExecRequest::new(command)
                    .sudo(sudo)
                    .timeout(Duration::from_secs(2)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SshError::CommandTimeout { .. }), "{err}");
        let pattern = format!("[e]{}", &marker[1..]);
        let mut left = String::new();
        for _ in 0..20 {
            left = lab.ssh_ok("lab-01", &format!("pgrep -f -- '{pattern}' || true"));
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(left, "", "sudo={sudo}: the grandchild still runs");
    }
}

/// When the host's PID 1 started (clock ticks since the machine booted): changes on reboot.
const INIT_STARTED: &str = "cut -d' ' -f22 /proc/1/stat";

#[tokio::test(flavor = "multi_thread")]
async fn a_host_rebooted_mid_run_is_reconnected() {
    let lab = lab(1);
    let s = setup(&lab.inventory_path(), &["lab-01"]);
    let fleet = Fleet::connect_all(
        s.targets.clone(),
        s.ctx.clone(),
        FleetSettings::default(),
        Arc::new(Silent),
    )
    .await;
    let before = fleet
        .run("boot id", |session| async move {
            Ok(session
                .exec(&ExecRequest::new(INIT_STARTED))
                .await?
                .stdout_lossy())
        })
        .await;
    let before = before[0].outcome.as_ref().unwrap().clone();
    lab.reboot("lab-01");
    // The old connection died with the host: the next step reconnects (with retries) first.
    let session = fleet.session("lab-01").unwrap().clone();
    for _ in 0..200 {
        if session.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(session.is_closed(), "the reboot must drop the connection");
    let after = fleet
        .run("again", |session| async move {
            Ok(session
                .exec(&ExecRequest::new(INIT_STARTED))
                .await?
                .stdout_lossy())
        })
        .await;
    let after = after[0].outcome.as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        &before, after,
        "the host's init restarted between the two steps"
    );
    fleet.close_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_host_times_out_while_the_others_succeed() {
    let lab = lab(2);
    let mut s = setup(&lab.inventory_path(), &["lab-01", "lab-02"]);
    for t in &mut s.targets {
        t.connect_timeout = Duration::from_secs(2);
    }
    lab.freeze("lab-01");
    let settings = FleetSettings {
        connect_attempts: 2,
        ..Default::default()
    };
    let fleet =
        Fleet::connect_all(s.targets.clone(), s.ctx.clone(), settings, Arc::new(Silent)).await;
    let results = fleet
        .run("uname", |session| async move {
            Ok(session
                .exec(&ExecRequest::new("uname -n"))
                .await?
                .stdout_lossy())
        })
        .await;
    lab.thaw("lab-01");
    assert_eq!(results[0].host, "lab-01");
    match &results[0].outcome {
        Err(HostError::Unreachable(e)) => {
            assert!(matches!(**e, SshError::ConnectTimeout { .. }), "{e}")
        }
        other => panic!("lab-01 should time out: {other:?}"),
    }
    assert_eq!(results[1].outcome.as_ref().unwrap(), "lab-02\n");
    fleet.close_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_behind_the_delay_proxy_still_works() {
    let lab = lab(1);
    let s = setup(&lab.inventory_path(), &["lab-01"]);
    lab.delay("lab-01", 50);
    let result = Session::connect(target(&s, "lab-01"), s.ctx.clone()).await;
    let out = match &result {
        Ok(session) => Some(session.exec(&ExecRequest::new("uname -n")).await),
        Err(_) => None,
    };
    let out = out.unwrap_or_else(|| panic!("{:?}", result.err())).unwrap();
    assert_eq!(out.stdout_lossy(), "lab-01\n");
}
