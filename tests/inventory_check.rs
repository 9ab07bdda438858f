//! `edgeops check` end to end: the shipped examples pass, and each malformed inventory under
//! tests/fixtures/inventory/bad/ exits 2 with a message naming the right file:line:col and what is
//! expected.

use std::path::Path;

use assert_cmd::cargo::cargo_bin_cmd;

/// Run `edgeops check` from the crate root with a home folder that holds no SSH keys, so the
/// default-key lookup cannot differ between machines.
fn check(args: &[&str]) -> assert_cmd::assert::Assert {
    let home = tempfile::tempdir().expect("temp home");
    let assert = cargo_bin_cmd!("edgeops")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HOME", home.path())
        .env_remove("K3S_TOKEN")
        .env_remove("GITLAB_TOKEN")
        .arg("check")
        .args(args)
        .assert();
    drop(home);
    assert
}

fn stdout_of(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

fn stderr_of(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

#[test]
fn examples_pass() {
    for example in ["pi-cluster", "ha", "fleet-200"] {
        let path = format!("inventory/{example}.toml");
        let assert = check(&[&path]).success();
        let out = stdout_of(&assert);
        assert!(out.contains(": valid"), "{path}: {out}");
    }
}

#[test]
fn pi_cluster_summary_shows_roles_and_ranges() {
    let out = stdout_of(&check(&["inventory/pi-cluster.toml"]).success());
    assert!(out.contains("3 hosts (1 server, 2 agents)"), "{out}");
    assert!(
        out.contains("pi-[02-03]  (2 agents, 192.168.1.102-192.168.1.103)"),
        "{out}"
    );
    assert!(out.contains("k3s channel `stable`"), "{out}");
}

#[test]
fn fleet_summary_shows_ranges_compactly() {
    let out = stdout_of(&check(&["inventory/fleet-200.toml"]).success());
    assert!(out.contains("200 hosts (1 server, 199 agents)"), "{out}");
    assert!(
        out.contains("store-[001-160]  (160 agents, 10.100.1.1-10.100.1.160)"),
        "{out}"
    );
    assert!(
        out.contains("depot-[01-39]    (39 agents, 10.100.2.250-10.100.3.32)"),
        "{out}"
    );
}

#[test]
fn limit_narrows_the_summary() {
    let out = stdout_of(
        &check(&[
            "inventory/fleet-200.toml",
            "--limit",
            "store-[001-010],servers,!store-007",
        ])
        .success(),
    );
    assert!(
        out.contains("10 of 200 hosts selected (1 server, 9 agents)"),
        "{out}"
    );
    assert!(
        out.contains("store-[001-006,008-010]  (9 of 160 agents"),
        "{out}"
    );
    assert!(!out.contains("depot"), "{out}");
}

#[test]
fn limit_matching_nothing_is_a_usage_error() {
    let assert = check(&["inventory/pi-cluster.toml", "--limit", "pi-01,pi-99"]).code(2);
    let err = stderr_of(&assert);
    assert!(
        err.contains("--limit term `pi-99` matches no host"),
        "{err}"
    );
}

#[test]
fn json_output_lists_expanded_hosts_with_settings() {
    let assert = check(&[
        "inventory/ha.toml",
        "--output",
        "json",
        "--limit",
        "@workers",
    ])
    .success();
    let json: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(json["cluster"]["name"], "edge-ha");
    assert_eq!(json["cluster"]["version"], "v1.31.4+k3s1");
    assert_eq!(json["cluster"]["token"]["env"], "K3S_TOKEN");
    assert_eq!(json["counts"]["hosts"], 8);
    assert_eq!(json["counts"]["selected"], 5);
    let hosts = json["hosts"].as_array().unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["worker-1", "worker-2", "worker-3", "worker-4", "gpu-1"]
    );
    assert_eq!(hosts[3]["address"], "10.20.1.13");
    // gpu-1 overrides user and port; the group's zone label merges with its own.
    assert_eq!(hosts[4]["ssh"]["user"], "nvidia");
    assert_eq!(hosts[4]["ssh"]["port"], 2222);
    assert_eq!(hosts[0]["ssh"]["user"], "ops");
    assert_eq!(hosts[4]["labels"]["topology.kubernetes.io/zone"], "rack-b");
    assert_eq!(hosts[4]["labels"]["example.com/accelerator"], "jetson");
    assert_eq!(
        hosts[0]["ssh"]["jump"]["address"],
        "bastion.edge.example.com"
    );
    assert_eq!(hosts[0]["ssh"]["command_timeout_secs"], 900.0);
}

#[test]
fn a_missing_file_is_bad_input() {
    let err = stderr_of(&check(&["inventory/nope.toml"]).code(2));
    assert!(
        err.contains("cannot read inventory `inventory/nope.toml`"),
        "{err}"
    );
}

/// One test per malformed fixture: exit code 2, `file:line:col`, and every expected fragment.
macro_rules! rejects {
    ($($name:ident at $loc:literal: [$($fragment:literal),+ $(,)?];)+) => {$(
        #[test]
        fn $name() {
            let path = format!("tests/fixtures/inventory/bad/{}.toml", stringify!($name));
            assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(&path).is_file(), "{path} missing");
            let assert = check(&[&path]).code(2);
            let err = stderr_of(&assert);
            let location = if $loc.is_empty() { path.clone() } else { format!("{path}:{}", $loc) };
            assert!(err.contains(&format!("--> {location}")), "expected `--> {location}` in:\n{err}");
            $(assert!(err.contains($fragment), "expected {:?} in:\n{err}", $fragment);)+
            assert!(stdout_of(&assert).is_empty(), "nothing on stdout for an invalid inventory");
        }
    )+};
}

rejects! {
    typo_key at "6:1": ["unknown key `identity_file` in `[ssh]`", "did you mean `identity_files`?"];
    typo_host_key at "6:1": ["unknown key `adress` in `[[hosts]]`", "did you mean `address`?"];
    typo_inline_ssh at "7:9": ["unknown key `usr`", "did you mean `user`?", "valid keys here: user, port"];
    unknown_table at "4:2": ["unknown key `sssh`", "did you mean `ssh`?"];
    duplicate_host at "10:8": ["duplicate host name `pi-01`", "first defined on line 5"];
    duplicate_address at "11:11": ["duplicate address `10.0.0.1:22` (hosts `pi-01` and `pi-02`)"];
    duplicate_node_name at "10:8": ["duplicate node name `pi-01`", "set a different `node_name`"];
    reversed_range at "10:15": ["reversed range `10-01`", "write `01-10`"];
    range_padding at "10:15": ["inconsistent zero-padding in `01-100`", "`001-100`"];
    range_empty at "10:14": ["empty range `[]`", "`[01-32]`"];
    range_count_mismatch at "11:11": ["gives 3 values but name `pi-[02-05]` gives 4 hosts", "same length"];
    single_address_for_range at "11:11": ["is one value but name `pi-[02-05]` expands to 4 hosts", "address_start"];
    range_past_octet at "11:11": ["`10.0.0.256` is not an IPv4 address", "use `address_start`"];
    address_start_overflow at "11:17": ["would go past 255.255.255.255"];
    ha_even_servers at "3:6": ["`ha = true` needs an odd number of servers, at least 3; this inventory has 2"];
    servers_without_ha at "12:8": ["2 servers but `ha` is not set", "set `ha = true`"];
    no_server at "7:8": ["no server among the 3 hosts", "role = \"server\""];
    inline_token at "3:9": ["inline secret `token` in `[cluster]`", "token_env", "token_file"];
    inline_sudo_password at "7:17": ["inline secret `sudo_password`", "sudo_password_env"];
    inline_gitlab_token at "12:9": ["inline secret `token` in `[gitlab]`", "token_env"];
    sudo_password_without_env at "6:8": ["`sudo = \"password\"` without `sudo_password_env`"];
    bad_version at "3:11": ["`1.31.4` is not a k3s version", "`v1.31.4+k3s1`"];
    channel_and_version at "4:11": ["both `channel` and `version` are set"];
    bad_taint at "8:11": ["taint `dedicated=edge` has no effect", "`key=value:Effect`"];
    bad_label_key at "5:22": ["`-zone` is not a Kubernetes label key"];
    unknown_group at "14:11": ["unknown group `egde`", "did you mean `edge`?"];
    missing_identity_file at "5:19": ["keys/does-not-exist", "ssh.identity_files of [ssh]", "does not exist"];
    bad_duration at "5:19": ["connect_timeout: `soon` is not a duration", "`10s`"];
    bad_port at "7:16": ["port 0 is out of range", "1-65535"];
    bad_jump at "5:8": ["jump host `ops@bastion:99999` has a port outside 1-65535", "`user@host:port`"];
    gitlab_url_not_http at "10:7": ["`gitlab.example.com` is not an http(s) URL", "https://"];
    airgap_image_missing at "4:11": ["images file", "images/missing.tar.zst` does not exist"];
    artifacts_dir_without_airgap at "4:17": ["`artifacts_dir` is set but `airgap = false`"];
    images_without_airgap at "3:11": ["not an image tarball", "`images` is set but the cluster is not air-gapped"];
    missing_role at "5:8": ["host `pi-01` has no role", "role = \"agent\""];
    bad_role at "6:8": ["unknown role `master`", "`server`"];
    syntax_error at "2:12": ["invalid basic string", "valid TOML"];
    wrong_type at "5:8": ["expected an integer"];
    missing_cluster at "": ["missing `[cluster]` table"];
    bad_cluster_name at "2:8": ["cluster name `Pi_Lab` is not a DNS label"];
    disable_typo at "3:12": ["`traefic` is not a k3s component", "did you mean `traefik`?"];
    host_key_policy_typo at "5:19": ["unknown host_key_policy `accept_new`", "did you mean `accept-new`?"];
    concurrency_per_host at "7:23": ["`concurrency` is not a per-host setting"];
    secret_in_env_name at "3:13": ["`token_env` is not an environment variable name", "e.g. `K3S_TOKEN`"];
    secret_in_syntax_error at "3:32": ["invalid basic string", "token = ****"];
    hosts_single_brackets at "3:1": ["expected a list", "write `[[hosts]]`"];
}

#[test]
fn inline_secrets_are_never_echoed() {
    for (fixture, secret) in [
        ("inline_token", "s3cr3t-value"),
        ("inline_sudo_password", "hunter2-secret"),
        ("inline_gitlab_token", "glpat-abcdefsecret"),
        ("secret_in_env_name", "xyzsecret"),
        ("secret_in_syntax_error", "s3cr3t"),
    ] {
        let path = format!("tests/fixtures/inventory/bad/{fixture}.toml");
        let assert = check(&[&path]).code(2);
        let err = stderr_of(&assert);
        assert!(!err.contains(secret), "{fixture} leaked its secret:\n{err}");
        assert!(
            err.contains("****"),
            "{fixture} should mask the value:\n{err}"
        );
    }
}

#[test]
fn several_problems_are_reported_together_in_file_order() {
    let err = stderr_of(&check(&["tests/fixtures/inventory/multiple_errors.toml"]).code(2));
    insta::assert_snapshot!("multiple_errors", err);
}

#[test]
fn unknown_key_rendering() {
    let err = stderr_of(&check(&["tests/fixtures/inventory/bad/typo_key.toml"]).code(2));
    insta::assert_snapshot!("typo_key", err);
}

#[test]
fn inline_secret_rendering() {
    let err = stderr_of(&check(&["tests/fixtures/inventory/bad/inline_token.toml"]).code(2));
    insta::assert_snapshot!("inline_token", err);
}

#[test]
fn tilde_expands_to_home_and_default_keys_are_found() {
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    // Real keys: `check` parses identity files (a placeholder is not a key).
    for name in ["id_ed25519", "edge"] {
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(ssh.join(name))
            .status()
            .unwrap();
        assert!(made.success());
    }
    let inventory = home.path().join("inv.toml");
    std::fs::write(
        &inventory,
        "[cluster]\nname = \"lab\"\n\n[[hosts]]\nname = \"s1\"\nrole = \"server\"\n\n\
         [[hosts]]\nname = \"a1\"\nrole = \"agent\"\nssh = { identity_files = [\"~/.ssh/edge\"] }\n",
    )
    .unwrap();
    let assert = cargo_bin_cmd!("edgeops")
        .env("HOME", home.path())
        .args(["check", "--output", "json"])
        .arg(&inventory)
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    let files = |i: usize| json["hosts"][i]["ssh"]["identity_files"].clone();
    assert_eq!(files(0), serde_json::json!([ssh.join("id_ed25519")]));
    assert_eq!(files(1), serde_json::json!([ssh.join("edge")]));
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    // `edgeops check -o json | head -1`: the read end is closed before edgeops writes, so its
    // write fails with EPIPE; that must neither panic nor be reported as an error.
    let home = tempfile::tempdir().expect("temp home");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edgeops"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("HOME", home.path())
        .args(["check", "inventory/fleet-200.toml", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run edgeops");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for edgeops");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn registries_and_k3s_extras_are_summarised_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.yaml"), "kind: ConfigMap\n").unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[cluster]\nname = \"t\"\nmanifests = [\"app.yaml\"]\n\
         service_env = { NO_PROXY = \"10.0.0.0/8\" }\n\
         [cluster.k3s_config]\ncluster-cidr = \"10.52.0.0/16\"\n\
         [[hosts]]\nname = \"s\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n\
         [registries.mirrors.\"*\"]\nendpoints = [\"https://registry.site:5000\"]\n\
         [registries.configs.\"registry.site:5000\"]\nusername = \"u\"\npassword_env = \"REG_PASS\"\n",
    )
    .unwrap();
    let ok = check(&[good.to_str().unwrap()]).success();
    let out = stdout_of(&ok);
    assert!(
        out.contains("registries: mirrors *; configs registry.site:5000"),
        "{out}"
    );
    assert!(
        out.contains("1 free-form config flag(s), 1 manifest(s), service env NO_PROXY"),
        "{out}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[cluster]\nname = \"t\"\n[[hosts]]\nname = \"s\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n\
         [registries.configs.\"registry.site:5000\"]\nusername = \"u\"\npassword = \"hunter2-secret\"\n",
    )
    .unwrap();
    let failed = check(&[bad.to_str().unwrap()]).code(2);
    let err = stderr_of(&failed);
    assert!(err.contains("inline secret `password`"), "{err}");
    assert!(err.contains("bad.toml:9:12"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
}
