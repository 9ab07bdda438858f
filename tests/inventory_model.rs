//! The validated model from inventory text: defaults, layering of `[ssh]` < groups < host, address
//! patterns, and property tests for hostlist ranges and `--limit` selection.

use std::path::Path;
use std::time::Duration;

use edgeops::inventory::hostlist::{Pattern, fold};
use edgeops::inventory::{
    self, ErrorKind, HostKeyPolicy, Inventory, Role, RunnerType, SecretSource, Sudo, select,
};
use proptest::prelude::*;

fn parse(text: &str) -> Inventory {
    inventory::parse(text, Path::new("/nowhere/inv.toml")).unwrap_or_else(|e| panic!("{e}"))
}

const MINIMAL: &str = r#"
[cluster]
name = "lab"
[ssh]
identity_files = []
[[hosts]]
name = "s1"
address = "10.0.0.1"
role = "server"
"#;

#[test]
fn defaults_are_applied() {
    let inv = parse(MINIMAL);
    let c = &inv.cluster;
    assert_eq!(c.channel, "stable");
    assert_eq!(c.version, None);
    assert_eq!(c.token, SecretSource::Generate);
    assert_eq!(c.install_url, "https://get.k3s.io");
    assert_eq!(c.channel_url, "https://update.k3s.io/v1-release/channels");
    assert!(!c.ha && !c.airgap);
    assert_eq!(inv.concurrency, 64);
    let host = &inv.hosts[0];
    assert_eq!(host.node_name, "s1");
    assert_eq!(host.role, Role::Server);
    let ssh = &host.ssh;
    assert_eq!((ssh.user.as_str(), ssh.port), ("root", 22));
    assert_eq!(ssh.sudo, Sudo::None, "root needs no sudo");
    assert!(ssh.use_agent);
    assert_eq!(ssh.host_key_policy, HostKeyPolicy::Strict);
    assert_eq!(ssh.connect_timeout, Duration::from_secs(10));
    assert_eq!(ssh.command_timeout, Duration::from_secs(600));
    assert!(ssh.identity_files.is_empty() && ssh.jump.is_none());
}

#[test]
fn join_timeout_defaults_to_five_minutes_and_reads_a_duration() {
    assert_eq!(
        parse(MINIMAL).cluster.join_timeout,
        Duration::from_secs(300)
    );
    let text = MINIMAL.replace("name = \"lab\"", "name = \"lab\"\njoin_timeout = \"40s\"");
    assert_eq!(parse(&text).cluster.join_timeout, Duration::from_secs(40));
    let bad = MINIMAL.replace("name = \"lab\"", "name = \"lab\"\njoin_timeout = \"soon\"");
    let err = inventory::parse(&bad, Path::new("/nowhere/inv.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("join_timeout") && err.contains("inv.toml:4"),
        "{err}"
    );
}

#[test]
fn ssh_settings_layer_defaults_then_groups_in_order_then_host() {
    let inv = parse(
        r#"
[cluster]
name = "lab"
[ssh]
user = "pi"
port = 2200
identity_files = []
connect_timeout = 5
jump = "bastion"
[groups.slow.ssh]
connect_timeout = "1m"
command_timeout = "1h"
[groups.direct]
ssh = { jump = "", port = 22 }
labels = { tier = "edge", site = "a" }
taints = ["edge=true:NoSchedule"]
extra_args = ["--kubelet-arg=max-pods=20"]
[groups.site-b]
labels = { site = "b" }
role = "agent"
[[hosts]]
name = "s1"
role = "server"
[[hosts]]
name = "a1"
groups = ["slow", "direct", "site-b"]
labels = { site = "c" }
taints = ["edge=true:NoSchedule", "gpu:NoExecute"]
extra_args = ["--node-ip=10.0.0.2"]
ssh = { user = "admin", sudo = "password", sudo_password_env = "SUDO_PW" }
"#,
    );
    let (s1, a1) = (&inv.hosts[0], &inv.hosts[1]);
    assert_eq!((s1.ssh.user.as_str(), s1.ssh.port), ("pi", 2200));
    assert_eq!(
        s1.ssh.sudo,
        Sudo::Passwordless,
        "non-root users default to sudo -n"
    );
    assert_eq!(s1.ssh.connect_timeout, Duration::from_secs(5));
    assert_eq!(s1.ssh.jump.as_ref().unwrap().address, "bastion");
    assert_eq!(a1.role, Role::Agent, "role from group site-b");
    assert_eq!(a1.ssh.user, "admin");
    assert_eq!(a1.ssh.port, 22, "group direct overrides [ssh]");
    assert!(
        a1.ssh.jump.is_none(),
        "jump = \"\" removes the default jump host"
    );
    assert_eq!(a1.ssh.connect_timeout, Duration::from_secs(60));
    assert_eq!(a1.ssh.command_timeout, Duration::from_secs(3600));
    assert_eq!(
        a1.ssh.sudo,
        Sudo::Password {
            env: "SUDO_PW".into()
        }
    );
    assert_eq!(a1.labels["tier"], "edge");
    assert_eq!(a1.labels["site"], "c", "host labels win over groups");
    assert_eq!(
        a1.taints,
        ["edge=true:NoSchedule", "gpu:NoExecute"],
        "deduplicated, in order"
    );
    assert_eq!(
        a1.extra_args,
        ["--kubelet-arg=max-pods=20", "--node-ip=10.0.0.2"]
    );
    assert_eq!(a1.groups, ["slow", "direct", "site-b"]);
}

#[test]
fn address_patterns_expand_per_host() {
    let inv = parse(
        r#"
[cluster]
name = "lab"
[ssh]
identity_files = []
[[hosts]]
name = "s1"
role = "server"
[[hosts]]
name = "pi-[08-11]"
address = "{name}.local"
node_name = "edge-{name}"
role = "agent"
[[hosts]]
name = "n[1-3,7]"
address_start = "10.0.0.254"
role = "agent"
[[hosts]]
name = "r[1-2]-b[1-2]"
address = "10.1.0.[1-4]"
role = "agent"
"#,
    );
    let pairs: Vec<(&str, &str, &str)> = inv
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.address.as_str(), h.node_name.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("s1", "s1", "s1"),
            ("pi-08", "pi-08.local", "edge-pi-08"),
            ("pi-09", "pi-09.local", "edge-pi-09"),
            ("pi-10", "pi-10.local", "edge-pi-10"),
            ("pi-11", "pi-11.local", "edge-pi-11"),
            ("n1", "10.0.0.254", "n1"),
            ("n2", "10.0.0.255", "n2"),
            ("n3", "10.0.1.0", "n3"),
            ("n7", "10.0.1.1", "n7"),
            ("r1-b1", "10.1.0.1", "r1-b1"),
            ("r1-b2", "10.1.0.2", "r1-b2"),
            ("r2-b1", "10.1.0.3", "r2-b1"),
            ("r2-b2", "10.1.0.4", "r2-b2"),
        ]
    );
}

#[test]
fn relative_paths_start_at_the_inventory_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    // A real private key under an odd name: identity files are parsed at load.
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.path().join("keys/edge.pub.example"))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::write(dir.path().join("token"), "t").unwrap();
    let text = r#"
[cluster]
name = "lab"
token_file = "token"
[ssh]
identity_files = ["keys/edge.pub.example"]
known_hosts = "known_hosts"
[[hosts]]
name = "s1"
role = "server"
"#;
    let path = dir.path().join("inv.toml");
    let inv = inventory::parse(text, &path).unwrap();
    assert_eq!(
        inv.cluster.token,
        SecretSource::File(dir.path().join("token"))
    );
    assert_eq!(
        inv.hosts[0].ssh.identity_files,
        [dir.path().join("keys/edge.pub.example")]
    );
    assert_eq!(
        inv.hosts[0].ssh.known_hosts,
        Some(dir.path().join("known_hosts"))
    );
}

#[test]
fn gitlab_defaults_follow_the_cluster() {
    let inv = parse(&format!(
        "{MINIMAL}\n[gitlab]\nurl = \"https://gitlab.example.com/\"\nproject = \"ops/lab\"\n"
    ));
    let g = inv.gitlab.unwrap();
    assert_eq!(g.url, "https://gitlab.example.com");
    assert_eq!(g.agent_name, "lab");
    assert_eq!(g.token, SecretSource::Env("GITLAB_TOKEN".into()));
    assert!(g.runner.enabled && g.runner.run_untagged && !g.runner.privileged);
    assert_eq!(g.runner.runner_type, RunnerType::Project);
    assert_eq!(g.runner.concurrent, 4);
}

#[test]
fn group_runner_needs_a_group() {
    let text = format!(
        "{MINIMAL}\n[gitlab]\nurl = \"https://gitlab.example.com\"\nproject = \"ops/lab\"\n[gitlab.runner]\ntype = \"group\"\n"
    );
    let err = inventory::parse(&text, Path::new("inv.toml")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingKey);
    assert!(
        err.to_string()
            .contains("a group runner needs `[gitlab]` `group`"),
        "{err}"
    );
}

#[test]
fn errors_have_kinds_callers_can_branch_on() {
    let cases = [
        (
            "[cluster]\nname = \"x\"\ntoken = \"s\"\n",
            ErrorKind::InlineSecret,
        ),
        ("[cluster]\nnmae = \"x\"\n", ErrorKind::UnknownKey),
        ("[cluster]\nname = \"x\"\n", ErrorKind::Topology),
        ("[cluster\n", ErrorKind::Syntax),
    ];
    for (text, kind) in cases {
        let err = inventory::parse(text, Path::new("inv.toml")).unwrap_err();
        assert_eq!(err.kind(), kind, "{text}: {err}");
    }
}

#[test]
fn five_thousand_hosts_validate() {
    let mut text = String::from("[cluster]\nname = \"big\"\n[ssh]\nidentity_files = []\n");
    text.push_str("[[hosts]]\nname = \"s1\"\nrole = \"server\"\naddress = \"10.0.0.1\"\n");
    text.push_str(
        "[[hosts]]\nname = \"pi-[0001-4999]\"\naddress_start = \"10.1.0.1\"\nrole = \"agent\"\n",
    );
    let inv = parse(&text);
    assert_eq!(inv.hosts.len(), 5000);
    assert_eq!(inv.hosts[4999].address, "10.1.19.135");
}

proptest! {
    #[test]
    fn padded_runs_expand_in_order_and_fold_back(
        prefix in "[a-z]{1,6}-",
        start in 0u64..500,
        len in 1u64..300,
        width in 1usize..5,
    ) {
        let end = start + len;
        let width = width.max(end.to_string().len());
        let pattern = format!("{prefix}[{start:0width$}-{end:0width$}]");
        let names = Pattern::parse(&pattern).unwrap().expand();
        prop_assert_eq!(names.len() as u64, len + 1);
        for (i, name) in names.iter().enumerate() {
            prop_assert_eq!(name, &format!("{prefix}{:0width$}", start + i as u64));
        }
        prop_assert_eq!(fold(&names), pattern);
    }

    #[test]
    fn comma_runs_count_adds_up(runs in proptest::collection::vec((0u64..1000, 0u64..50), 1..6)) {
        let body: Vec<String> = runs.iter().map(|(a, n)| format!("{a}-{}", a + n)).collect();
        let pattern = Pattern::parse(&format!("n[{}]", body.join(","))).unwrap();
        let expected: u64 = runs.iter().map(|(_, n)| n + 1).sum();
        prop_assert_eq!(pattern.count(), expected);
        prop_assert_eq!(pattern.expand().len() as u64, expected);
    }

    #[test]
    fn reversed_runs_are_rejected(a in 1u64..10_000, gap in 1u64..100) {
        let pattern = format!("x[{}-{a}]", a + gap);
        prop_assert!(Pattern::parse(&pattern).is_err());
    }

    #[test]
    fn selection_keeps_order_and_exclusion_complements(
        agents in 1usize..60,
        picks in proptest::collection::vec(0usize..60, 1..8),
    ) {
        let text = format!(
            "[cluster]\nname = \"p\"\n[ssh]\nidentity_files = []\n\
             [[hosts]]\nname = \"s1\"\nrole = \"server\"\n\
             [[hosts]]\nname = \"a[1-{agents}]\"\naddress = \"{{name}}.lan\"\nrole = \"agent\"\n"
        );
        let inv = parse(&text);
        let names: Vec<String> = picks.iter().map(|p| format!("a{}", p % agents + 1)).collect();
        let pattern = names.join(",");
        let chosen = select(&inv, Some(&pattern)).unwrap();
        // Inventory order, no duplicates, exactly the named hosts.
        let positions: Vec<usize> = chosen
            .iter()
            .map(|h| inv.hosts.iter().position(|x| x.name == h.name).unwrap())
            .collect();
        prop_assert!(positions.windows(2).all(|w| w[0] < w[1]));
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(chosen.len(), unique.len());
        // `!` of the same names selects exactly the rest.
        let negated: Vec<String> = unique.iter().map(|n| format!("!{n}")).collect();
        let rest = select(&inv, Some(&negated.join(","))).unwrap();
        prop_assert_eq!(rest.len() + chosen.len(), inv.hosts.len());
        prop_assert!(rest.iter().all(|h| !unique.contains(&h.name)));
        // The folded form of the chosen names selects the same hosts.
        let folded = fold(&chosen.iter().map(|h| h.name.as_str()).collect::<Vec<_>>());
        let again: Vec<&str> = select(&inv, Some(&folded)).unwrap().iter().map(|h| h.name.as_str()).collect();
        let before: Vec<&str> = chosen.iter().map(|h| h.name.as_str()).collect();
        prop_assert_eq!(again, before);
    }
}
