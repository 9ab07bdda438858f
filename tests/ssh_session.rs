//! The ssh module against real OpenSSH servers on loopback: host-key policies, auth methods,
//! exec, upload, timeouts, reconnect, jump host, and that abandoned commands leave no process.

mod ssh_support;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use edgeops::ssh::{
    Credentials, ExecRequest, Exit, HostKeyPolicy, JumpOptions, KeyStore, KnownHosts, Session,
    SshContext, SshError,
};
use ssh_support::*;

#[tokio::test]
async fn strict_refuses_an_unknown_host_naming_host_and_fingerprint() {
    let key = client_key("ed25519", "");
    let sshd = Sshd::start(&[&key.path]);
    let (ctx, file) = context_with(key.dir.path(), "");
    let err = Session::connect(
        options("lab-01", sshd.port, credentials(&key.path, None)),
        ctx,
    )
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SshError::HostKeyUnknown(_)), "{message}");
    assert!(message.starts_with("lab-01: "), "{message}");
    assert!(
        message.contains(&fingerprint_of(&sshd.host_key_pub())),
        "{message}"
    );
    assert!(message.contains(&file.display().to_string()), "{message}");
    // The line to add is exactly the server's key in known_hosts form.
    assert!(
        message.contains(sshd.known_hosts_line().trim()),
        "{message}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn strict_refuses_a_changed_key_naming_the_line_to_fix() {
    let key = client_key("ed25519", "");
    let mut sshd = Sshd::start(&[&key.path]);
    let old_line = sshd.known_hosts_line();
    sshd.rotate_host_key();
    let (ctx, file) = context_with(key.dir.path(), &format!("# header\n{old_line}"));
    let err = Session::connect(
        options("lab-02", sshd.port, credentials(&key.path, None)),
        ctx,
    )
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, SshError::HostKeyChanged(_)), "{message}");
    assert!(message.starts_with("lab-02: HOST KEY CHANGED"), "{message}");
    assert!(
        message.contains(&fingerprint_of(&sshd.host_key_pub())),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}:2", file.display())),
        "{message}"
    );
}

#[tokio::test]
async fn accept_new_learns_then_refuses_a_change() {
    let key = client_key("ed25519", "");
    let mut sshd = Sshd::start(&[&key.path]);
    let (ctx, file) = context_with(key.dir.path(), "");
    let mut opts = options("lab-03", sshd.port, credentials(&key.path, None));
    opts.host_key_policy = HostKeyPolicy::AcceptNew;
    let session = Session::connect(opts.clone(), ctx).await.unwrap();
    session.close().await;
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        sshd.known_hosts_line()
    );

    sshd.rotate_host_key();
    // A new run reads the file again, as the next `edgeops` invocation would.
    let known = KnownHosts::load(std::slice::from_ref(&file), Some(file.clone())).unwrap();
    let err = Session::connect(opts, SshContext::new(known))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::HostKeyChanged(_)), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().lines().count(),
        1,
        "a changed key must not be learned"
    );
}

#[tokio::test]
async fn policy_off_accepts_any_key() {
    let key = client_key("ed25519", "");
    let sshd = Sshd::start(&[&key.path]);
    let (ctx, file) = context_with(key.dir.path(), "");
    let mut opts = options("lab-04", sshd.port, credentials(&key.path, None));
    opts.host_key_policy = HostKeyPolicy::Off;
    let session = Session::connect(opts, ctx).await.unwrap();
    assert!(
        session
            .exec(&ExecRequest::new("true"))
            .await
            .unwrap()
            .success()
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "",
        "off never records keys"
    );
}

async fn auth_with(kind: &str, passphrase: &str, env: Option<&str>) {
    let key = client_key(kind, passphrase);
    let sshd = Sshd::start(&[&key.path]);
    let (ctx, _) = context_with(key.dir.path(), &sshd.known_hosts_line());
    let session = Session::connect(options("lab", sshd.port, credentials(&key.path, env)), ctx)
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    let out = session.exec(&ExecRequest::new("echo hello")).await.unwrap();
    assert_eq!(out.stdout_lossy(), "hello\n");
}

#[tokio::test]
async fn auth_with_ed25519() {
    auth_with("ed25519", "", None).await;
}

#[tokio::test]
async fn auth_with_rsa_uses_sha2_signatures() {
    // OpenSSH >= 8.8 refuses SHA-1 `ssh-rsa` signatures: success proves rsa-sha2 was used.
    auth_with("rsa", "", None).await;
}

#[tokio::test]
async fn auth_with_ecdsa() {
    auth_with("ecdsa", "", None).await;
}

#[tokio::test]
async fn auth_with_an_encrypted_key_and_passphrase_from_env() {
    // SAFETY: only this test reads this variable.
    unsafe { std::env::set_var("EDGEOPS_TEST_KEY_PASSPHRASE", "correct horse") };
    auth_with(
        "ed25519",
        "correct horse",
        Some("EDGEOPS_TEST_KEY_PASSPHRASE"),
    )
    .await;
}

#[test]
fn an_encrypted_key_without_passphrase_says_how_to_give_one() {
    let key = client_key("ed25519", "secret");
    let err = KeyStore::new()
        .load(
            &key.path,
            &[edgeops::ssh::PassphraseSource::Env(
                "EDGEOPS_TEST_UNSET_VAR".into(),
            )],
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("set EDGEOPS_TEST_UNSET_VAR"),
        "{err}"
    );
}

#[tokio::test]
async fn agent_auth() {
    let key = client_key("ed25519", "");
    let sshd = Sshd::start(&[&key.path]);
    let socket = key.dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent (openssh-client) is needed");
    while !socket.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    run(std::process::Command::new("ssh-add")
        .env("SSH_AUTH_SOCK", &socket)
        .arg(&key.path));
    // SAFETY: the only test that reads SSH_AUTH_SOCK.
    unsafe { std::env::set_var("SSH_AUTH_SOCK", &socket) };
    let (ctx, _) = context_with(key.dir.path(), &sshd.known_hosts_line());
    let creds = Arc::new(Credentials {
        identities: vec![],
        use_agent: true,
        password: None,
    });
    let result = Session::connect(options("lab", sshd.port, creds), ctx).await;
    let _ = agent.kill();
    let _ = agent.wait();
    let session = result.unwrap();
    assert!(
        session
            .exec(&ExecRequest::new("true"))
            .await
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn a_key_the_server_does_not_accept_is_an_auth_error() {
    let key = client_key("ed25519", "");
    let other = client_key("ed25519", "");
    let sshd = Sshd::start(&[&key.path]);
    let (ctx, _) = context_with(key.dir.path(), &sshd.known_hosts_line());
    let err = Session::connect(
        options("lab-09", sshd.port, credentials(&other.path, None)),
        ctx,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::Auth { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("lab-09: authentication as root failed"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

async fn connected(key: &ClientKey, sshd: &Sshd) -> Session {
    let (ctx, _) = context_with(key.dir.path(), &sshd.known_hosts_line());
    Session::connect(options("lab", sshd.port, credentials(&key.path, None)), ctx)
        .await
        .unwrap()
}

#[tokio::test]
async fn exec_separates_streams_and_reports_status_signal_and_stdin() {
    let key = client_key("ed25519", "");
    let sshd = Sshd::start(&[&key.path]);
    let session = connected(&key, &sshd).await;

    let out = session
        .exec(&ExecRequest::new("echo out; echo err >&2; exit 3"))
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.exit, Exit::Status(3));

    let out = session
        .exec(&ExecRequest::new("kill -KILL $$"))
        .await
        .unwrap();
    assert!(
        matches!(&out.exit, Exit::Signal { name, .. } if name == "KILL"),
        "{:?}",
        out.exit
    );

    let out = session
        .exec(&ExecRequest::new("tr a-z A-Z").stdin(b"it's quoted; $(x)\n".to_vec()))
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), "IT'S QUOTED; $(X)\n");

    // Quoting: the command reaches sh intact, whatever it contains.
    let out = session
        .exec(&ExecRequest::new(r#"printf '%s|' "a b" 'c'\''d' "$HOME""#))
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), "a b|c'd|/root|");

    // Many commands over the one connection, some at once.
    // sshd allows 10 sessions per connection by default (MaxSessions).
    let requests: Vec<ExecRequest> = (0..8)
        .map(|i| ExecRequest::new(format!("echo {i}")))
        .collect();
    let runs = requests.iter().map(|r| session.exec(r));
    for (i, out) in futures::future::join_all(runs)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(out.unwrap().stdout_lossy(), format!("{i}\n"));
    }
}

#[tokio::test]
async fn passwordless_sudo_runs_as_root() {
    let key = client_key("ed25519", "");
    let sshd = Sshd::start(&[&key.path]);
    let (ctx, _) = context_with(key.dir.path(), &sshd.known_hosts_line());
    let mut opts = options("lab", sshd.port, credentials(&key.path, None));
    opts.sudo = edgeops::ssh::SudoMode::Passwordless;
    let session = Session::connect(opts, ctx).await.unwrap();
    let out = session
        .exec(&ExecRequest::new("id -u; ps -o args= -p $$").sudo(true))
        .await
        .unwrap();
    assert!(out.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stdout_lossy().starts_with("0\n"),
        "{}",
        out.stdout_lossy()
    );
}

#[tokio::test]
async fn upload_lands_atomically_with_mode_owner_and_content() {
    let key = client_key("ed25519", "");
    let sshd = Sshd::start(&[&key.path]);
    let session = connected(&key, &sshd).await;
    let target_dir = tempfile::tempdir().unwrap();
    let target = target_dir.path().join("it's a file.conf");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    session
        .upload(
            &content,
            target.to_str().unwrap(),
            0o640,
            Some("nobody"),
            false,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), content);
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), 65534, "owned by nobody");
    // Replacing keeps no temp files behind.
    session
        .upload(b"v2\n", target.to_str().unwrap(), 0o600, None, false)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"v2\n");
    let names: Vec<_> = std::fs::read_dir(target_dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);

    let err = session
        .upload(b"x", "/nonexistent-dir/file", 0o644, None, false)
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Upload { .. }), "{err}");
}

#[tokio::test]
async fn a_stopped_host_is_unreachable_and_retryable() {
    let key = client_key("ed25519", "");
    let (ctx, _) = context_with(key.dir.path(), "");
    let port = free_port();
    let err = Session::connect(options("down", port, credentials(&key.path, None)), ctx)
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_frozen_host_times_out_within_the_connect_timeout() {
    let key = client_key("ed25519", "");
    let frozen = FrozenHost::start();
    let (ctx, _) = context_with(key.dir.path(), "");
    let mut opts = options("frozen", frozen.port, credentials(&key.path, None));
    opts.connect_timeout = Duration::from_millis(700);
    let err = Session::connect(opts, ctx).await.unwrap_err();
    assert!(matches!(err, SshError::ConnectTimeout { .. }), "{err}");
    assert!(err.to_string().contains("within 700ms"), "{err}");
}

#[tokio::test]
async fn a_command_timeout_stops_the_remote_process() {
    let key = client_key("ed25519", "");
    let sshd = Sshd::start(&[&key.path]);
    let session = connected(&key, &sshd).await;
    let marker = "4711.0815";
    let err = session
        .exec(
            &ExecRequest::new(format!("sleep {marker}; echo done"))
                .timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::CommandTimeout { .. }), "{err}");
    let left = wait_until_gone(marker, Duration::from_secs(5));
    let log = std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default();
    assert!(left.is_empty(), "remote processes left: {left:?}\n{log}");
    // The connection is still good for the next command.
    assert!(
        session
            .exec(&ExecRequest::new("true"))
            .await
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn cancel_stops_running_commands_and_leaves_no_remote_process() {
    let key = client_key("ed25519", "");
    let sshd = Sshd::start(&[&key.path]);
    let (ctx, _) = context_with(key.dir.path(), &sshd.known_hosts_line());
    let session = Session::connect(
        options("lab", sshd.port, credentials(&key.path, None)),
        ctx.clone(),
    )
    .await
    .unwrap();
    let marker = "4712.0815";
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel();
    });
    let err = session
        .exec(&ExecRequest::new(format!("sleep {marker}; echo done")))
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Cancelled { .. }), "{err}");
    session.close().await;
    let left = wait_until_gone(marker, Duration::from_secs(5));
    assert!(left.is_empty(), "remote processes left: {left:?}");
}

#[tokio::test]
async fn reconnect_after_the_host_comes_back() {
    let key = client_key("ed25519", "");
    let mut sshd = Sshd::start(&[&key.path]);
    let session = connected(&key, &sshd).await;
    assert!(
        session
            .exec(&ExecRequest::new("true"))
            .await
            .unwrap()
            .success()
    );
    sshd.stop();
    let err = session.exec(&ExecRequest::new("true")).await.unwrap_err();
    assert!(
        err.is_retryable(),
        "a dropped connection is retryable: {err}"
    );
    let port = sshd.port;
    let back = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        sshd.restart();
        sshd
    });
    session.reconnect(Duration::from_secs(20)).await.unwrap();
    let _sshd = back.join().unwrap();
    let out = session.exec(&ExecRequest::new("echo back")).await.unwrap();
    assert_eq!(out.stdout_lossy(), "back\n", "port {port}");
}

#[tokio::test]
async fn jump_host_reaches_the_target_through_a_tunnel() {
    let key = client_key("ed25519", "");
    let jump = Sshd::start(&[&key.path]);
    let target = Sshd::start(&[&key.path]);
    let lines = format!("{}{}", jump.known_hosts_line(), target.known_hosts_line());
    let (ctx, _) = context_with(key.dir.path(), &lines);
    let mut opts = options("behind", target.port, credentials(&key.path, None));
    opts.jump = Some(JumpOptions {
        address: "127.0.0.1".into(),
        port: jump.port,
        user: "root".into(),
        via: None,
    });
    let session = Session::connect(opts, ctx).await.unwrap();
    // sshd records the peer of the tunnelled connection: the jump host's side (127.0.0.1).
    let out = session
        .exec(&ExecRequest::new("echo $SSH_CONNECTION"))
        .await
        .unwrap();
    let fields: Vec<String> = out
        .stdout_lossy()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(fields.last().unwrap(), &target.port.to_string());
    let jump_log = std::fs::read_to_string(jump.dir.path().join("sshd.log")).unwrap_or_default();
    assert!(!jump_log.contains("refused"), "{jump_log}");
}

#[tokio::test]
async fn a_jump_host_with_an_unknown_key_is_refused_by_name() {
    let key = client_key("ed25519", "");
    let jump = Sshd::start(&[&key.path]);
    let target = Sshd::start(&[&key.path]);
    let (ctx, _) = context_with(key.dir.path(), &target.known_hosts_line());
    let mut opts = options("behind", target.port, credentials(&key.path, None));
    opts.jump = Some(JumpOptions {
        address: "127.0.0.1".into(),
        port: jump.port,
        user: "root".into(),
        via: None,
    });
    let err = Session::connect(opts, ctx).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("behind (jump host 127.0.0.1): host key"),
        "{err}"
    );
}
