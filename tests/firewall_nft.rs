//! The nftables part of `open_firewall` against the real `nft` in a private network namespace:
//! accept rules go at the top of an input chain whose policy is drop, only there, once.
//! Needs root (as the lab tests do) for `unshare --net`.

use std::process::Command;

use edgeops::inventory::Role;
use edgeops::k3s::firewall::{DEFAULT_CLUSTER_CIDR, DEFAULT_SERVICE_CIDR, nft_script};

/// A host firewall as people write it: drop by default, SSH and loopback allowed; plus a chain
/// with policy accept that must stay untouched.
const RULESET: &str = "\
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    iif lo accept
    ct state established,related accept
    tcp dport 22 accept
  }
  chain forward { type filter hook forward priority filter; policy drop; }
}
table ip other {
  chain input { type filter hook input priority 10; policy accept; }
}
";

#[test]
fn nft_rules_open_k3s_once_and_only_in_dropping_input_chains() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.nft");
    let script = dir.path().join("open.sh");
    std::fs::write(&rules, RULESET).unwrap();
    std::fs::write(
        &script,
        nft_script(
            Role::Server,
            true,
            DEFAULT_CLUSTER_CIDR,
            DEFAULT_SERVICE_CIDR,
        ),
    )
    .unwrap();
    let out = Command::new("unshare")
        .arg("--net")
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "set -e; nft -f {rules}; echo \"first: $(sh {script})\"; \
             echo \"second: $(sh {script})\"; nft list ruleset",
            rules = rules.display(),
            script = script.display()
        ))
        .output()
        .expect("unshare (util-linux) and nft (nftables) are installed by scripts/test.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "needs root: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("first: inet filter input\n"), "{text}");
    assert!(
        text.contains("second: \n"),
        "a second run changes nothing:\n{text}"
    );
    let input = text
        .split("chain input {")
        .nth(1)
        .and_then(|c| c.split("chain forward").next())
        .unwrap();
    let ours: Vec<&str> = input
        .lines()
        .filter(|l| l.contains("edgeops-k3s"))
        .collect();
    assert_eq!(ours.len(), 3, "{input}");
    assert!(
        input.contains("tcp dport { 2379-2380, 6443, 10250 } accept comment \"edgeops-k3s\"")
            || input
                .contains("tcp dport { 6443, 2379-2380, 10250 } accept comment \"edgeops-k3s\""),
        "{input}"
    );
    assert!(input.contains("udp dport 8472 accept"), "{input}");
    // nft shows adjacent networks merged: 10.42.0.0/16 and 10.43.0.0/16 are 10.42.0.0/15.
    assert!(
        input.contains("ip saddr { 10.42.0.0/15 } accept")
            || input.contains("ip saddr { 10.42.0.0/16, 10.43.0.0/16 } accept"),
        "{input}"
    );
    // Ours come before the host's own rules, so its default drop never sees k3s traffic.
    let first_own = input.find("iif \"lo\" accept").unwrap();
    assert!(input.rfind("edgeops-k3s").unwrap() < first_own, "{input}");
    // The accepting chain of another table and the forward chain are untouched.
    let other = text.split("table ip other").nth(1).unwrap();
    assert!(!other.contains("edgeops-k3s"), "{other}");
    assert_eq!(text.matches("edgeops-k3s").count(), 3, "{text}");
}
