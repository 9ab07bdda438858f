//! Secrets where they hide, checked offline on the real binary: k3s flags that carry a secret
//! are refused by `check` (and so by every command) with the way to keep it out of the
//! inventory, and no error ever shows a value held by a secret-looking key, known or unknown.

use std::process::{Command, Output};

fn edgeops(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgeops"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("edgeops runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const SECRET: &str = "Sup3rS3cr3tValue";

fn inventory(dir: &std::path::Path, cluster_extra: &str, host_extra: &str) -> String {
    let path = dir.join("inv.toml");
    std::fs::write(
        &path,
        format!(
            "[cluster]\nname = \"c\"\n{cluster_extra}\n[ssh]\nuser = \"pi\"\n\
             [[hosts]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n{host_extra}\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn k3s_flags_carrying_secrets_are_refused_with_the_alternative() {
    let cases = [
        (
            format!("server_args = [\"--datastore-endpoint=postgres://u:{SECRET}@db:5432/k3s\"]"),
            "",
            "`--datastore-endpoint` in `[cluster] server_args` holds a password",
            "--datastore-certfile",
        ),
        (
            format!("server_args = [\"--etcd-s3\", \"--etcd-s3-secret-key={SECRET}\"]"),
            "",
            "`--etcd-s3-secret-key` in `[cluster] server_args`",
            "--etcd-s3-config-secret",
        ),
        (
            format!("agent_args = [\"--token\", \"{SECRET}\"]"),
            "",
            "`--token` in `[cluster] agent_args`",
            "token_env",
        ),
        (
            String::new(),
            "extra_args = [\"--agent-token=Sup3rS3cr3tValue\"]",
            "`--agent-token` in `extra_args` of host `s1`",
            "token_env",
        ),
        (
            format!("[groups.g]\nextra_args = [\"-t\", \"{SECRET}\"]"),
            "",
            "`-t` in `extra_args` of group `g`",
            "token_env",
        ),
        (
            format!("server_args = [\"--vpn-auth=name=tailscale,joinKey={SECRET}\"]"),
            "",
            "`--vpn-auth`",
            "--vpn-auth-file",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (cluster, host, message, help) in cases {
        let path = inventory(dir.path(), &cluster, host);
        for command in [
            &["check", path.as_str()][..],
            &[
                "render",
                path.as_str(),
                "--out",
                dir.path().join("out").to_str().unwrap(),
            ],
        ] {
            let out = edgeops(command);
            let all = text(&out);
            assert_eq!(out.status.code(), Some(2), "{command:?}: {all}");
            assert!(all.contains(message), "{command:?}: {all}");
            assert!(all.contains(help), "{command:?}: {all}");
            assert!(!all.contains(SECRET), "the secret is shown: {all}");
        }
    }
    // A datastore endpoint without a password is fine.
    let path = inventory(
        dir.path(),
        "server_args = [\"--datastore-endpoint=postgres://k3s@db:5432/k3s\"]",
        "",
    );
    let out = edgeops(&["check", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn values_under_secret_looking_keys_are_masked_in_every_error() {
    let dir = tempfile::tempdir().unwrap();
    for line in [
        format!("agent_token = \"{SECRET}\""),
        format!("k3s_token = \"{SECRET}\""),
        format!("secret = \"{SECRET}\""),
        format!("passwd = \"{SECRET}\""),
        format!("db_password = \"{SECRET}\""),
    ] {
        // Unknown keys in [cluster]: the error shows the line, never the value.
        let path = inventory(dir.path(), &line, "");
        let out = edgeops(&["check", &path]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(all.contains("unknown key"), "{all}");
        assert!(!all.contains(SECRET), "{line}: the value is shown:\n{all}");
        assert!(all.contains("****"), "{all}");
    }
    // A known key with a bad value on a line that also holds a secret-looking inline key.
    let path = inventory(
        dir.path(),
        "",
        &format!("ssh = {{ port = 99999, api_key = \"{SECRET}\" }}"),
    );
    let out = edgeops(&["check", &path]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(!all.contains(SECRET), "the value is shown:\n{all}");
}
