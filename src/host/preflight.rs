//! Preflight: from the facts alone, refuse (with a reason per host) what cannot work and warn
//! about what may not. Nothing is changed on hosts.

use std::collections::BTreeMap;

use crate::inventory::{Host, Role, Sudo};

use super::facts::Facts;

/// Below this, k3s does not run (docs.k3s.io requirements: 512 MB for an agent).
pub const MIN_MEMORY_MB: u64 = 450;
/// A server wants more (docs.k3s.io: 2 GB recommended); below this we warn.
pub const WARN_SERVER_MEMORY_MB: u64 = 1800;
/// The k3s binary, images and data need room under /var/lib.
pub const MIN_DISK_MB: u64 = 1024;
pub const WARN_DISK_MB: u64 = 4096;

/// The verdict for one host (defined with the distribution checks, which fill it too).
pub use super::distro::Verdict;

/// Check every host that has facts (`None`: unreachable, not judged here): a verdict per host,
/// in the order given.
pub fn check(hosts: &[(&Host, Option<&Facts>)]) -> Vec<Option<Verdict>> {
    let mut verdicts: Vec<Option<Verdict>> = hosts
        .iter()
        .map(|(host, facts)| facts.map(|f| check_one(host, f)))
        .collect();
    // Hosts (by index) sharing a hostname or a node name.
    let mut by_hostname: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut by_node_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (host, facts)) in hosts.iter().enumerate() {
        by_node_name.entry(&host.node_name).or_default().push(i);
        if let Some(f) = facts.filter(|f| !f.hostname.is_empty()) {
            by_hostname.entry(&f.hostname).or_default().push(i);
        }
    }
    let name = |i: usize| hosts[i].0.name.as_str();
    for (hostname, shared) in by_hostname.iter().filter(|(_, n)| n.len() > 1) {
        for &i in shared {
            let others: Vec<&str> = shared
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| name(j))
                .collect();
            if let Some(v) = &mut verdicts[i] {
                v.refusals.push(format!(
                    "hostname {hostname} is also the hostname of {} (k3s node passwords and \
                     hostnames must be unique)",
                    others.join(", ")
                ));
            }
        }
    }
    for (node, shared) in by_node_name.iter().filter(|(_, n)| n.len() > 1) {
        let names: Vec<&str> = shared.iter().map(|&j| name(j)).collect();
        for &i in shared {
            if let Some(v) = &mut verdicts[i] {
                v.refusals.push(format!(
                    "node name {node} is shared by {}",
                    names.join(", ")
                ));
            }
        }
    }
    verdicts
}

fn check_one(host: &Host, f: &Facts) -> Verdict {
    let mut v = Verdict::default();
    if f.arch.is_none() {
        v.refusals.push(format!(
            "unsupported architecture {:?} (k3s ships amd64, arm64, arm/armhf and s390x)",
            f.machine
        ));
    }
    match f.init.as_str() {
        "systemd" => {}
        "openrc" => v
            .refusals
            .push("init system openrc: edgeops manages k3s as a systemd service only".into()),
        other => v.refusals.push(format!(
            "init system {:?}: k3s needs systemd (or openrc) as PID 1",
            other.trim_start_matches("other:")
        )),
    }
    let needs_sudo_check = f.uid != 0 && !matches!(host.ssh.sudo, Sudo::Password { .. });
    if needs_sudo_check && !f.sudo {
        v.refusals.push(format!(
            "no root: logged in as uid {} and `sudo -n true` failed (give {} passwordless sudo, \
             or set sudo = \"password\" and sudo_password_env = \"VAR\" in [ssh])",
            f.uid, host.ssh.user
        ));
    }
    if f.memory_mb > 0 && f.memory_mb < MIN_MEMORY_MB {
        v.refusals.push(format!(
            "only {} MB of memory (k3s needs at least 512 MB)",
            f.memory_mb
        ));
    } else if host.role == Role::Server && f.memory_mb > 0 && f.memory_mb < WARN_SERVER_MEMORY_MB {
        v.warnings.push(format!(
            "{} MB of memory: a k3s server is happier with 2 GB",
            f.memory_mb
        ));
    }
    if f.disk_free_mb < MIN_DISK_MB {
        v.refusals.push(format!(
            "only {} MB free under /var/lib (k3s needs at least {MIN_DISK_MB} MB)",
            f.disk_free_mb
        ));
    } else if f.disk_free_mb < WARN_DISK_MB {
        v.warnings.push(format!(
            "{} MB free under /var/lib: images may not fit",
            f.disk_free_mb
        ));
    }
    if f.pi_needs_cgroup() && f.cmdline_file.is_none() {
        v.refusals.push(
            "Raspberry Pi without the memory cgroup and without /boot/firmware/cmdline.txt or \
             /boot/cmdline.txt to enable it in (k3s does not start without it)"
                .into(),
        );
    }
    if f.services.len() > 1 {
        v.refusals
            .push("both k3s (server) and k3s-agent are installed: reset the host first".into());
    }
    super::distro::check(f, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k3s::test_inventory;

    fn facts(text: &str) -> Facts {
        Facts::parse(text)
    }

    const GOOD: &str =
        "arch=x86_64\ninit=systemd\nmem_kb=4000000\ndisk_kb=20000000\nsudo=yes\nuid=1000\n";

    #[test]
    fn a_good_host_passes() {
        let host = test_inventory::agent("a1", "10.0.0.2");
        let f = facts(&format!("{GOOD}hostname=a1\n"));
        let v = check(&[(&host, Some(&f))]);
        assert_eq!(v, vec![Some(Verdict::default())]);
    }

    #[test]
    fn each_problem_is_a_reason() {
        let host = test_inventory::agent("a1", "10.0.0.2");
        let text = "arch=mips\ninit=other:sh\nmem_kb=100000\ndisk_kb=100\nsudo=no\nuid=1000\n\
                    model=Raspberry Pi 4\nmemory_cgroup=no\n";
        let f = facts(text);
        let v = check(&[(&host, Some(&f))]);
        let reasons = v[0].as_ref().unwrap().refusals.join("\n");
        for needle in [
            "mips",
            "init system \"sh\"",
            "no root",
            "memory",
            "free under",
            "cgroup",
        ] {
            assert!(reasons.contains(needle), "{needle} missing in:\n{reasons}");
        }
    }

    #[test]
    fn the_no_root_hint_suggests_a_sudo_form_the_inventory_accepts() {
        let host = test_inventory::agent("a1", "10.0.0.2");
        let text =
            "arch=x86_64\ninit=systemd\nmem_kb=4000000\ndisk_kb=20000000\nsudo=no\nuid=1000\n";
        let f = facts(text);
        let v = check(&[(&host, Some(&f))]);
        let reason = v[0].as_ref().unwrap().refusals.join("\n");
        // The hint's TOML, pasted into [ssh] as it says, must load.
        let (_, hint) = reason.split_once("or set ").expect("a hint");
        let hint = hint.trim_end_matches(" in [ssh])");
        let lines = hint.replace(" and ", "\n");
        let inventory = format!(
            "[cluster]\nname = \"c\"\n[ssh]\nuser = \"pi\"\n{lines}\n\
             [[hosts]]\nname = \"s1\"\naddress = \"10.0.0.1\"\nrole = \"server\"\n"
        );
        let parsed = crate::inventory::parse(&inventory, std::path::Path::new("hint.toml"));
        assert!(parsed.is_ok(), "{inventory}\n{:?}", parsed.err());
    }

    #[test]
    fn duplicate_hostnames_refuse_both() {
        let a = test_inventory::agent("a1", "10.0.0.2");
        let b = test_inventory::agent("a2", "10.0.0.3");
        let f = facts(&format!("{GOOD}hostname=raspberrypi\n"));
        let c = test_inventory::agent("a3", "10.0.0.4");
        let v = check(&[(&a, Some(&f)), (&b, Some(&f)), (&c, None)]);
        assert!(v[0].as_ref().unwrap().refusals[0].contains("also the hostname of a2"));
        assert!(v[1].as_ref().unwrap().refusals[0].contains("also the hostname of a1"));
        assert_eq!(v[2], None, "a host without facts is not judged");
    }
}
