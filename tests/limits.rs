//! Limits on careless or hostile input, checked offline on the real binary: numeric flags and
//! durations follow the inventory's rules on the command line (refused, exit 2, never a panic),
//! and an inventory cannot expand to more hosts than the documented cap (a clear error naming
//! the entry, fast, in little memory).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn edgeops(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeops"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("edgeops runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const INVENTORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/inventory/pi-cluster.toml");

#[test]
fn out_of_range_flags_are_refused_like_the_inventory_refuses_them() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["up", INVENTORY, "--ready-timeout", "9999999999999999999s"],
            "24h",
        ),
        (&["up", INVENTORY, "--ready-timeout", "0s"], "zero"),
        (
            &[
                "upgrade",
                INVENTORY,
                "--version",
                "v1.31.4+k3s1",
                "--drain-timeout",
                "25h",
            ],
            "24h",
        ),
        (
            &["reset", INVENTORY, "--yes", "--drain-timeout", "25h"],
            "24h",
        ),
        (
            &[
                "replace",
                INVENTORY,
                "pi-2",
                "--yes",
                "--ready-timeout",
                "0s",
            ],
            "zero",
        ),
        (
            &["exec", INVENTORY, "--timeout", "0s", "--", "true"],
            "zero",
        ),
        (&["check", INVENTORY, "--concurrency", "0"], "1 to 10000"),
        (
            &["check", INVENTORY, "--concurrency", "100001"],
            "1 to 10000",
        ),
        (
            &["exec", INVENTORY, "--concurrency=-3", "--", "true"],
            "1 to 10000",
        ),
    ];
    for (args, needle) in cases {
        let out = edgeops(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // In range still works.
    let ok = edgeops(&["check", INVENTORY, "--concurrency", "10000"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
}

#[test]
fn an_inventory_duration_past_the_limit_is_an_error_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.toml");
    std::fs::write(
        &path,
        "[cluster]\nname = \"c\"\n[ssh]\nuser = \"pi\"\nconnect_timeout = \"9999999999999999999s\"\n\
         [[hosts]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n",
    )
    .unwrap();
    let out = edgeops(&["check", path.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("slow.toml:5"), "{err}");
    assert!(err.contains("24h"), "{err}");
}

#[test]
fn many_entries_within_the_per_entry_limit_cannot_add_up_to_millions_of_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.toml");
    let mut toml = String::from("[cluster]\nname = \"c\"\n[ssh]\nuser = \"pi\"\n");
    toml.push_str("[[hosts]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n");
    for i in 1..=40 {
        toml.push_str(&format!(
            "[[hosts]]\nname = \"g{i}-[1-100000]\"\naddress_start = \"10.{i}.0.1\"\nrole = \"agent\"\n"
        ));
    }
    std::fs::write(&path, toml).unwrap();
    let started = Instant::now();
    let out = edgeops(&["check", path.to_str().unwrap()]);
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    // The first entry that goes over the cap is named, with its line.
    assert!(
        err.contains("hosts `g1-[1-100000]` bring the inventory to 100001 hosts"),
        "{err}"
    );
    assert!(err.contains("huge.toml:10"), "{err}");
    assert!(err.contains("at most 100000 hosts in all"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// A host whose TCP port accepts but whose sshd never speaks (frozen): the whole connect,
/// retries included, takes `connect_timeout`, as the message says, not once per attempt.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_host_costs_its_connect_timeout_once_not_per_attempt() {
    use edgeops::fleet::{Fleet, FleetSettings, HostError, Silent};
    use edgeops::ssh::{
        ConnectOptions, Credentials, HostKeyPolicy, KnownHosts, SshContext, SudoMode,
    };
    use std::sync::Arc;

    // Bound, never accepted: the kernel completes the TCP handshake, nothing answers after.
    let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = frozen.local_addr().unwrap().port();
    let opts = ConnectOptions {
        name: "frozen".into(),
        address: "127.0.0.1".into(),
        port,
        user: "pi".into(),
        credentials: Arc::new(Credentials {
            identities: Vec::new(),
            use_agent: false,
            password: None,
        }),
        host_key_policy: HostKeyPolicy::Strict,
        jump: None,
        proxy_command: None,
        connect_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(5),
        sudo: SudoMode::None,
    };
    let ctx = SshContext::new(KnownHosts::load(&[], None).unwrap());
    let settings = FleetSettings {
        connect_attempts: 3,
        backoff: Duration::from_millis(100),
        ..Default::default()
    };
    let started = Instant::now();
    let fleet = Fleet::connect_all(vec![opts], ctx, settings, Arc::new(Silent)).await;
    let took = started.elapsed();
    let results = fleet.run("probe", |_| async { Ok(()) }).await;
    let Err(HostError::Unreachable(error)) = &results[0].outcome else {
        panic!("{:?}", results[0].outcome);
    };
    assert!(error.to_string().contains("within 1s"), "{error}");
    assert!(
        took < Duration::from_millis(1600),
        "took {took:?} for a 1s limit"
    );
    drop(frozen);
}
