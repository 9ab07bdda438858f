//! The user's ssh_config against the lab's real sshd: aliases and an `Include`d file honoured,
//! a host reached only through a two-hop `ProxyJump` chain of lab hosts, a host reached only
//! through `ProxyCommand` (OpenSSH's `ssh -W` through a bastion), the inventory winning where it
//! says something, unsupported directives reported, and `check -v` naming each value's origin.

mod support;

use std::process::{Command, Output};

use support::{Edgeops, Lab};

fn all(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Inside `host`'s network namespace, drop SSH connections from `sources`: the host is then
/// reachable only from elsewhere (a bastion).
fn refuse_ssh_from(lab: &Lab, host: &str, sources: &[&str]) {
    let ns = format!("edl{}-{host}", lab.id());
    let rules = format!(
        "table ip onlyvia {{\n chain input {{\n  type filter hook input priority 0;\n  \
         ip saddr {{ {} }} tcp dport 22 drop\n }}\n}}\n",
        sources.join(", ")
    );
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nft in {ns}: {}", all(&out));
}

#[test]
fn ssh_config_aliases_include_two_hop_proxyjump_and_proxycommand() {
    let lab = Lab::options(4).sshd_only().start();
    let addr = |h: &str| lab.host(h).address.clone();
    let bridge = lab.bridge_address();
    // lab-02 only from lab-01; lab-03 only from lab-02; lab-04 only from lab-01.
    refuse_ssh_from(&lab, "lab-02", &[&bridge]);
    refuse_ssh_from(&lab, "lab-03", &[&bridge, &addr("lab-01")]);
    refuse_ssh_from(&lab, "lab-04", &[&bridge]);
    let direct = lab.ssh_with("lab-03", &["-o", "ConnectTimeout=2"], "true");
    assert!(
        !direct.status.success(),
        "lab-03 must not be reachable directly"
    );

    let user = Edgeops::new();
    let ssh_dir = user.home().join(".ssh");
    std::fs::create_dir_all(ssh_dir.join("config.d")).unwrap();
    let key = lab.key_path().display().to_string();
    let kh = lab.known_hosts_path().display().to_string();
    std::fs::write(
        ssh_dir.join("config"),
        format!(
            "Include config.d/*.conf\n\
             Host first\n  HostName {one}\n  User nobody\n\
             Match exec \"true\"\n  User root\n\
             Host *\n  User pi\n  IdentityFile {key}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {kh}\n  ForwardAgent yes\n",
            one = addr("lab-01"),
        ),
    )
    .unwrap();
    std::fs::write(
        ssh_dir.join("config.d/lab.conf"),
        format!(
            "Host bastion1\n  HostName {one}\n\
             Host bastion2\n  HostName {two}\n\
             Host board3\n  HostName {three}\n  ProxyJump bastion1,bastion2\n\
             Host board4\n  HostName {four}\n  ProxyCommand ssh -i {key} -o UserKnownHostsFile={kh} \
             -o StrictHostKeyChecking=yes -o BatchMode=yes -W %h:%p pi@{one}\n\
             Host board* !board9\n  ConnectTimeout 7\n",
            one = addr("lab-01"),
            two = addr("lab-02"),
            three = addr("lab-03"),
            four = addr("lab-04"),
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("aliases.toml");
    // `one` sets its user in the inventory: that wins over ssh_config's `User nobody`.
    std::fs::write(
        &inv,
        "[cluster]\nname = \"aliases\"\n\n\
         [[hosts]]\nname = \"one\"\naddress = \"first\"\nrole = \"server\"\nssh = { user = \"pi\" }\n\n\
         [[hosts]]\nname = \"three\"\naddress = \"board3\"\nrole = \"agent\"\n\n\
         [[hosts]]\nname = \"four\"\naddress = \"board4\"\nrole = \"agent\"\n",
    )
    .unwrap();
    let inv = inv.to_str().unwrap();

    let out = user.run(&["exec", inv, "--", "hostname"]);
    let text = all(&out);
    assert!(out.status.success(), "{text}");
    for (name, host) in [("one", "lab-01"), ("three", "lab-03"), ("four", "lab-04")] {
        assert!(text.contains(&format!("{name}: {host}\n")), "{text}");
    }
    // Unsupported lines that apply are reported, once each.
    assert_eq!(
        text.matches("forwardagent yes: not supported").count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches("`Match exec true` is not supported").count(),
        1,
        "{text}"
    );

    // check -v: every value with its origin.
    let out = user.run(&["check", inv, "-v"]);
    let text = all(&out);
    assert!(out.status.success(), "{text}");
    let conf = ssh_dir.join("config.d/lab.conf").display().to_string();
    let main = ssh_dir.join("config").display().to_string();
    // (value, origin) of one row: the value may hold spaces, the origin never does.
    let row = |host: &str, setting: &str| -> (String, String) {
        let fields: Vec<&str> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&host) && f.get(1) == Some(&setting))
            .unwrap_or_else(|| panic!("no {host} {setting} row in:\n{text}"));
        let (origin, value) = fields[2..].split_last().unwrap();
        (value.join(" "), origin.to_string())
    };
    assert_eq!(
        row("one", "user"),
        ("pi".into(), "inventory".into()),
        "{text}"
    );
    assert_eq!(row("one", "address").0, addr("lab-01"), "{text}");
    assert_eq!(row("three", "user").0, "pi", "{text}");
    assert!(
        row("three", "user").1.starts_with(&format!("{main}:")),
        "{text}"
    );
    assert_eq!(
        row("three", "address"),
        (addr("lab-03"), format!("{conf}:6")),
        "{text}"
    );
    assert_eq!(
        row("three", "route"),
        (
            format!("jump pi@{}:22 -> pi@{}:22", addr("lab-01"), addr("lab-02")),
            format!("{conf}:7")
        ),
        "{text}"
    );
    assert!(
        row("four", "route").0.starts_with("ProxyCommand ssh -i"),
        "{text}"
    );
    assert!(
        row("four", "route")
            .0
            .contains(&format!("-W {}:22 ", addr("lab-04"))),
        "{text}"
    );
    assert_eq!(
        row("four", "connect_timeout"),
        ("7s".into(), format!("{conf}:12")),
        "{text}"
    );
    assert_eq!(
        row("one", "connect_timeout"),
        ("10s".into(), "default".into()),
        "{text}"
    );
    assert_eq!(row("three", "agent").0, "false", "{text}");

    // -F names another file (and a missing one is bad input).
    let alt = dir.path().join("alt_config");
    std::fs::write(&alt, "Host first\n  Port 2222\n").unwrap();
    let out = user.run(&["-F", alt.to_str().unwrap(), "check", inv, "-v"]);
    assert!(out.status.success(), "{}", all(&out));
    let text = all(&out);
    let port = text
        .lines()
        .find(|l| l.starts_with("one ") && l.contains(" port "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        port.contains(" 2222 ") && port.ends_with(&format!("{}:2", alt.display())),
        "{text}"
    );
    let out = user.run(&["-F", "/nonexistent/ssh_config", "check", inv, "-v"]);
    assert_eq!(out.status.code(), Some(2), "{}", all(&out));
}

/// "Accepted publickey" lines lab `host`'s sshd logged for connections from `from`.
fn accepted_from(lab: &Lab, host: &str, from: &str) -> usize {
    let log = lab.state_dir().join("hosts").join(host).join("console.log");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.starts_with("Accepted publickey for ") && l.contains(&format!(" from {from} "))
        })
        .count()
}

#[test]
fn hosts_behind_one_bastion_share_one_connection_to_it() {
    let lab = Lab::options(4).sshd_only().start();
    let bridge = lab.bridge_address();
    let bastion = lab.host("lab-01").address.clone();
    for host in ["lab-02", "lab-03", "lab-04"] {
        refuse_ssh_from(&lab, host, &[&bridge]);
    }
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let text = text.replacen("[ssh]\n", &format!("[ssh]\njump = \"pi@{bastion}\"\n"), 1);
    let inv = dir.path().join("behind.toml");
    std::fs::write(&inv, text).unwrap();
    let inv = inv.to_str().unwrap();
    let user = Edgeops::new();

    let before = accepted_from(&lab, "lab-01", &bridge);
    let out = user.run(&["exec", inv, "--limit", "lab-[02-04]", "--", "hostname"]);
    let text = all(&out);
    assert!(out.status.success(), "{text}");
    for host in ["lab-02", "lab-03", "lab-04"] {
        assert!(text.contains(&format!("{host}: {host}\n")), "{text}");
        // Each target saw its connection come from the bastion.
        assert!(accepted_from(&lab, host, &bastion) >= 1, "{host}");
    }
    // Three targets, one login on the bastion.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(accepted_from(&lab, "lab-01", &bridge) - before, 1);
}
