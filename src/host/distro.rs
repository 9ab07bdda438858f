//! Distribution prerequisites from the k3s docs (docs.k3s.io "Requirements" and "Known
//! issues"), judged from facts gathered in the one facts round trip: refusals for what stops
//! k3s from working, warnings for what often bites, each with the fix.
//!
//! - Ubuntu on a Raspberry Pi ships vxlan in `linux-modules-extra-raspi`: without it flannel's
//!   default (vxlan) backend cannot build the pod network. Refused.
//! - `nm-cloud-setup` (RHEL-family NetworkManager) must be disabled: refused.
//! - firewalld / ufw active: warned, with the ports and ranges to open.
//! - iptables 1.6.1 and 1.8.0-1.8.4 have rule-duplication bugs; k3s bundles a good iptables
//!   (`--prefer-bundled-bin`), or the host switches to iptables-legacy / a newer version. Warned.

use super::facts::Facts;

/// One host's preflight verdict: what stops k3s (refusals) and what often bites (warnings).
/// Defined here, below `preflight`, which adds its own findings to the same verdict.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

/// Add the distribution findings for one host to `v`.
pub fn check(f: &Facts, v: &mut Verdict) {
    match (f.vxlan, f.is_pi() && f.os_id == "ubuntu") {
        (Some(false), true) => v.refusals.push(
            "Ubuntu on a Raspberry Pi without the vxlan kernel module (flannel's default backend \
             needs it): run `sudo apt install linux-modules-extra-raspi` and reboot"
                .into(),
        ),
        (Some(false), false) => v.warnings.push(
            "the kernel has no vxlan module: flannel's default vxlan backend will not work \
             (install your distribution's extra kernel modules, or set another \
             --flannel-backend in server_args)"
                .into(),
        ),
        _ => {}
    }
    if f.nm_cloud_setup {
        v.refusals.push(
            "nm-cloud-setup is enabled, which breaks k3s networking: run `sudo systemctl disable \
             nm-cloud-setup.service nm-cloud-setup.timer` and reboot"
                .into(),
        );
    }
    for (on, name, how) in [
        (
            f.firewalld_active,
            "firewalld",
            "`firewall-cmd --permanent --add-port=6443/tcp --add-port=10250/tcp \
             --add-port=8472/udp` and trust 10.42.0.0/16 and 10.43.0.0/16",
        ),
        (
            f.ufw_enabled,
            "ufw",
            "`ufw allow 6443/tcp`, `ufw allow 10250/tcp`, `ufw allow 8472/udp`, \
             `ufw allow from 10.42.0.0/16` and `ufw allow from 10.43.0.0/16`",
        ),
    ] {
        if on {
            v.warnings.push(format!(
                "{name} is active: the k3s docs recommend turning it off, or opening the k3s \
                 ports: {how} (plus 2379-2380/tcp between HA servers)"
            ));
        }
    }
    if let Some(text) = &f.iptables
        && let Some(version) = iptables_version(text)
        && buggy_iptables(version)
    {
        let legacy = if text.contains("nf_tables") {
            ", or switch to iptables-legacy (`update-alternatives --set iptables /usr/sbin/iptables-legacy`)"
        } else {
            ""
        };
        v.warnings.push(format!(
            "{}: iptables {}.{}.{} has known bugs that make k3s pile up duplicate rules: add \
             `--prefer-bundled-bin` to server_args and agent_args (k3s bundles a good iptables), \
             or upgrade it{legacy}",
            text.trim(),
            version.0,
            version.1,
            version.2
        ));
    }
}

/// `iptables v1.8.4 (nf_tables)` → (1, 8, 4).
fn iptables_version(text: &str) -> Option<(u32, u32, u32)> {
    let word = text.split_whitespace().find(|w| w.starts_with('v'))?;
    let mut parts = word[1..].split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// The versions the k3s docs name: 1.6.1, and 1.8.0 to 1.8.4.
fn buggy_iptables(v: (u32, u32, u32)) -> bool {
    v == (1, 6, 1) || (v.0 == 1 && v.1 == 8 && v.2 <= 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PI: &str = "model=Raspberry Pi 4 Model B\n";

    fn verdict(text: &str) -> Verdict {
        let mut v = Verdict::default();
        check(&Facts::parse(text), &mut v);
        v
    }

    #[test]
    fn ubuntu_pi_without_vxlan_is_refused_with_the_package() {
        let v = verdict(&format!("{PI}os_id=ubuntu\nvxlan=no\n"));
        assert!(v.refusals[0].contains("linux-modules-extra-raspi"), "{v:?}");
        // With the module, or when the host cannot tell, nothing is said.
        assert_eq!(
            verdict(&format!("{PI}os_id=ubuntu\nvxlan=yes\n")),
            Verdict::default()
        );
        assert_eq!(
            verdict(&format!("{PI}os_id=ubuntu\nvxlan=unknown\n")),
            Verdict::default()
        );
        // Elsewhere a missing module is a warning.
        let v = verdict("os_id=debian\nvxlan=no\n");
        assert!(
            v.refusals.is_empty() && v.warnings[0].contains("vxlan"),
            "{v:?}"
        );
    }

    #[test]
    fn firewalls_warn_and_nm_cloud_setup_refuses() {
        let v = verdict("firewalld=active\nufw=enabled\nnm_cloud_setup=enabled\n");
        assert!(v.warnings[0].starts_with("firewalld is active"), "{v:?}");
        assert!(v.warnings[1].starts_with("ufw is active"), "{v:?}");
        assert!(v.refusals[0].contains("nm-cloud-setup"), "{v:?}");
        assert_eq!(
            verdict("firewalld=inactive\nnm_cloud_setup=disabled\n"),
            Verdict::default()
        );
    }

    #[test]
    fn only_the_buggy_iptables_versions_warn() {
        let v = verdict("iptables=iptables v1.8.4 (nf_tables)\n");
        assert!(v.warnings[0].contains("--prefer-bundled-bin"), "{v:?}");
        assert!(v.warnings[0].contains("iptables-legacy"), "{v:?}");
        assert!(verdict("iptables=iptables v1.6.1\n").warnings[0].contains("1.6.1"));
        for good in [
            "iptables v1.8.9 (nf_tables)",
            "iptables v1.8.7 (legacy)",
            "iptables v1.6.2",
        ] {
            assert_eq!(verdict(&format!("iptables={good}\n")), Verdict::default());
        }
    }
}
