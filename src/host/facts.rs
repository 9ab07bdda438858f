//! What a host is, gathered in one round trip: one POSIX sh script prints `key=value` lines,
//! parsed into [`Facts`]. Runs as the login user (no sudo): everything it reads is world-readable,
//! which is also why edgeops writes its config hash file 0644 (a hash of non-secret files).
//!
//! The installed version comes from a stamp edgeops writes after each install (`VERSION SIZE
//! MTIME` of the binary) as long as the binary's size and mtime still match; only otherwise is
//! `k3s --version` run, which costs far more than the rest of the script (it unpacks the binary's
//! runtime check on small boards, and is a Python start in the lab's simulator).

use std::collections::HashMap;

use crate::engine::{Engine, Failure, HostId};
use crate::inventory::Role;
use crate::k3s::install::{CONFIG_HASH_PATH, VERSION_STAMP_PATH};
use crate::ssh::ExecRequest;

use crate::k3s::{K3sArch, K3sVersion};

/// The script. Every probe is guarded so one missing tool never hides the other facts; values
/// never contain newlines (each probe is cut to its first line).
pub fn script() -> String {
    format!(
        r#"export LC_ALL=C PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
kv() {{ printf '%s=%s\n' "$1" "$(printf '%s' "$2" | head -n 1)"; }}
kv os "$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null)"
kv arch "$(uname -m 2>/dev/null)"
kv kernel "$(uname -r 2>/dev/null)"
kv mem_kb "$(awk '/^MemTotal:/ {{print $2}}' /proc/meminfo 2>/dev/null)"
if [ -d /run/systemd/system ]; then init=systemd
elif command -v openrc-run >/dev/null 2>&1 || [ -x /sbin/openrc-run ]; then init=openrc
else init="other:$(cat /proc/1/comm 2>/dev/null)"; fi
kv init "$init"
kv hostname "$(cat /proc/sys/kernel/hostname 2>/dev/null || hostname)"
kv uid "${{SUDO_UID:-$(id -u)}}"
kv boot_id "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
if [ -x /usr/local/bin/k3s ]; then
  v=
  if [ -r {stamp} ] && read -r sv ss sm <{stamp} && [ "$(stat -c '%s %Y' /usr/local/bin/k3s)" = "$ss $sm" ]; then v=$sv; fi
  [ -n "$v" ] || v=$(/usr/local/bin/k3s --version 2>/dev/null | awk '{{print $3; exit}}')
  kv k3s_version "$v"
fi
for unit in k3s k3s-agent; do
  if [ -f "/etc/systemd/system/$unit.service" ] || [ -f "/etc/init.d/$unit" ]; then
    kv "unit_$unit" "$(systemctl is-active "$unit" 2>/dev/null || echo unknown)"
  fi
done
[ -r {hash} ] && kv config_hash "$(cat {hash})"
model=$(tr -d '\0' </proc/device-tree/model 2>/dev/null || tr -d '\0' </sys/firmware/devicetree/base/model 2>/dev/null)
kv model "$model"
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then cg=yes
elif awk '$1=="memory" && $4=="1" {{f=1}} END {{exit !f}}' /proc/cgroups 2>/dev/null; then cg=yes
else cg=no; fi
kv memory_cgroup "$cg"
for f in /boot/firmware/cmdline.txt /boot/cmdline.txt; do
  [ -f "$f" ] || continue
  kv cmdline_file "$f"
  if grep -qw cgroup_memory=1 "$f" && grep -qw cgroup_enable=memory "$f"; then kv cmdline_flags yes; else kv cmdline_flags no; fi
  break
done
if grep -qw cgroup_enable=memory /proc/cmdline 2>/dev/null; then kv booted_cgroup_flags yes; else kv booted_cgroup_flags no; fi
kv os_id "$( (. /etc/os-release && echo "$ID") 2>/dev/null)"
k=$(uname -r 2>/dev/null)
if [ -d /sys/module/vxlan ]; then vx=yes
elif [ -r "/lib/modules/$k/modules.dep" ]; then
  if grep -qs '/vxlan\.ko' "/lib/modules/$k/modules.dep" "/lib/modules/$k/modules.builtin"; then vx=yes; else vx=no; fi
else vx=unknown; fi
kv vxlan "$vx"
command -v iptables >/dev/null 2>&1 && kv iptables "$(iptables --version 2>/dev/null)"
kv firewalld "$(systemctl is-active firewalld 2>/dev/null)"
grep -qsx 'ENABLED=yes' /etc/ufw/ufw.conf && kv ufw enabled
kv nm_cloud_setup "$(systemctl is-enabled nm-cloud-setup.service 2>/dev/null)"
kv disk_kb "$(df -Pk /var/lib 2>/dev/null | awk 'NR==2 {{print $4}}')"
if [ "$(id -u)" = 0 ]; then kv sudo yes
elif sudo -n true 2>/dev/null; then kv sudo yes
else kv sudo no; fi
"#,
        hash = CONFIG_HASH_PATH,
        stamp = VERSION_STAMP_PATH,
    )
}

/// The k3s service found on a host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Service {
    /// `k3s` (server) or `k3s-agent`.
    pub unit: String,
    #[serde(serialize_with = "ser_role")]
    pub role: Role,
    /// `systemctl is-active`: `active`, `activating`, `failed`, `inactive`, ...
    pub state: String,
}

impl Service {
    pub fn active(&self) -> bool {
        self.state == "active"
    }
}

/// One host's facts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Facts {
    pub os: String,
    /// `uname -m` as reported.
    pub machine: String,
    /// The k3s architecture, when `machine` is one k3s ships for.
    #[serde(serialize_with = "ser_arch")]
    pub arch: Option<K3sArch>,
    pub kernel: String,
    pub memory_mb: u64,
    /// `systemd`, `openrc`, or `other:COMM`.
    pub init: String,
    pub hostname: String,
    pub uid: u32,
    pub boot_id: String,
    /// `k3s --version` of the installed binary, if any.
    #[serde(serialize_with = "ser_version")]
    pub k3s_version: Option<K3sVersion>,
    /// Units found (a host can wrongly have both).
    pub services: Vec<Service>,
    /// The config hash edgeops recorded at its last successful install here.
    pub config_hash: Option<String>,
    /// Device-tree model (`Raspberry Pi 4 Model B Rev 1.5`), if any.
    pub model: Option<String>,
    pub memory_cgroup: bool,
    /// The Pi firmware's kernel command line file (`/boot/firmware/cmdline.txt`), if any.
    pub cmdline_file: Option<String>,
    /// That file already asks for the memory cgroup (`cgroup_memory=1 cgroup_enable=memory`).
    pub cmdline_flags: bool,
    /// The running kernel was booted with `cgroup_enable=memory` (`/proc/cmdline`): a reboot
    /// cannot turn the memory cgroup on if it is still off.
    pub booted_cgroup_flags: bool,
    pub disk_free_mb: u64,
    /// Root works: the login user is root, or `sudo -n true` succeeded.
    pub sudo: bool,
    /// `ID` of /etc/os-release (`debian`, `ubuntu`, `raspbian`, `rhel`, ...).
    pub os_id: String,
    /// The kernel has or can load the vxlan module (flannel's default backend); `None` when
    /// the host has no module list to tell.
    pub vxlan: Option<bool>,
    /// `iptables --version` of the host's own iptables, if installed.
    pub iptables: Option<String>,
    /// `systemctl is-active firewalld` says active.
    pub firewalld_active: bool,
    /// `/etc/ufw/ufw.conf` has `ENABLED=yes`.
    pub ufw_enabled: bool,
    /// NetworkManager's `nm-cloud-setup.service` is enabled (k3s requires it off).
    pub nm_cloud_setup: bool,
}

fn ser_role<S: serde::Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(role.as_str())
}

fn ser_arch<S: serde::Serializer>(arch: &Option<K3sArch>, s: S) -> Result<S::Ok, S::Error> {
    match arch {
        Some(a) => s.serialize_some(a.as_str()),
        None => s.serialize_none(),
    }
}

fn ser_version<S: serde::Serializer>(v: &Option<K3sVersion>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&v.to_string()),
        None => s.serialize_none(),
    }
}

impl Facts {
    /// Parse the script's output. Unknown keys are ignored (a newer script, an older parser).
    pub fn parse(output: &str) -> Facts {
        let map: HashMap<&str, &str> = output
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let text = |key: &str| map.get(key).copied().unwrap_or("").to_owned();
        let number = |key: &str| {
            map.get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let non_empty = |key: &str| {
            map.get(key)
                .filter(|v| !v.is_empty())
                .map(|v| v.to_string())
        };
        let machine = text("arch");
        let mut services = Vec::new();
        for (unit, role) in [("k3s", Role::Server), ("k3s-agent", Role::Agent)] {
            if let Some(state) = map.get(format!("unit_{unit}").as_str()) {
                services.push(Service {
                    unit: unit.to_owned(),
                    role,
                    state: state.to_string(),
                });
            }
        }
        Facts {
            os: text("os"),
            arch: K3sArch::from_uname(&machine).ok(),
            machine,
            kernel: text("kernel"),
            memory_mb: number("mem_kb") / 1024,
            init: text("init"),
            hostname: text("hostname"),
            uid: number("uid") as u32,
            boot_id: text("boot_id"),
            k3s_version: non_empty("k3s_version").and_then(|v| v.parse().ok()),
            services,
            config_hash: non_empty("config_hash"),
            model: non_empty("model"),
            memory_cgroup: text("memory_cgroup") == "yes",
            cmdline_file: non_empty("cmdline_file"),
            cmdline_flags: text("cmdline_flags") == "yes",
            booted_cgroup_flags: text("booted_cgroup_flags") == "yes",
            disk_free_mb: number("disk_kb") / 1024,
            sudo: text("sudo") == "yes",
            os_id: text("os_id"),
            vxlan: match text("vxlan").as_str() {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            },
            iptables: non_empty("iptables"),
            firewalld_active: text("firewalld") == "active",
            ufw_enabled: text("ufw") == "enabled",
            nm_cloud_setup: text("nm_cloud_setup") == "enabled",
        }
    }

    /// The service of the given role, if installed.
    pub fn service(&self, role: Role) -> Option<&Service> {
        self.services.iter().find(|s| s.role == role)
    }

    /// k3s is installed here in some role (binary and a unit).
    pub fn installed_role(&self) -> Option<Role> {
        self.k3s_version.as_ref()?;
        match self.services.as_slice() {
            [only] => Some(only.role),
            _ => None,
        }
    }

    /// A Raspberry Pi whose kernel lacks the memory cgroup k3s needs, or whose cmdline.txt
    /// does not ask for it (the flags count only after a reboot).
    pub fn pi_needs_cgroup(&self) -> bool {
        self.is_pi() && (!self.cmdline_flags || !self.memory_cgroup)
    }

    /// A Raspberry Pi booted with the memory cgroup flags whose memory controller is still
    /// off (reported for Raspberry Pi 5 kernels): another reboot cannot fix it.
    pub fn pi_memory_cgroup_stuck(&self) -> bool {
        self.is_pi() && self.cmdline_flags && self.booted_cgroup_flags && !self.memory_cgroup
    }

    pub fn is_pi(&self) -> bool {
        self.model
            .as_deref()
            .is_some_and(|m| m.contains("Raspberry Pi"))
    }
}

/// One host's facts, read in one round trip (`script` with `MAX_OUTPUT`), counted on the
/// engine and logged as read. An answer past the bound is refused, not cut.
pub async fn read(engine: &Engine, id: HostId) -> Result<Facts, Failure> {
    let request = ExecRequest::new(script()).max_output(MAX_OUTPUT);
    let out = engine.exec_unlogged(id, "facts", &request).await?;
    bounded(&out).map_err(|e| Failure::refused(format!("{e:#}")))?;
    let stdout = out.stdout_lossy();
    engine.log().write(engine.name(id), "facts", &stdout);
    Ok(Facts::parse(&stdout))
}

/// The most a host's facts answer may hold (a real one is under 2 KiB): a host that answers
/// with more cannot make edgeops hold it, and is refused.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// Refuse a facts answer that was cut at [`MAX_OUTPUT`].
pub fn bounded(out: &crate::ssh::ExecOutput) -> anyhow::Result<()> {
    if out.truncated {
        anyhow::bail!(
            "facts: output truncated: the host answered with more than {} KiB (a facts answer \
             is under 2 KiB); something on the host rewrites what the facts script prints",
            MAX_OUTPUT / 1024
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE: &str = "os=Debian GNU/Linux 12 (bookworm)\narch=aarch64\nkernel=6.1.0\n\
        mem_kb=3884096\ninit=systemd\nhostname=pi-01\nuid=1000\nboot_id=abc\nmodel=Raspberry Pi 4 Model B Rev 1.5\n\
        memory_cgroup=no\ncmdline_file=/boot/firmware/cmdline.txt\ncmdline_flags=no\ndisk_kb=20480000\nsudo=yes\n";

    #[test]
    fn bare_pi_facts() {
        let facts = Facts::parse(BARE);
        assert_eq!(facts.arch, Some(K3sArch::Arm64));
        assert_eq!(facts.memory_mb, 3793);
        assert_eq!(facts.disk_free_mb, 20000);
        assert!(facts.is_pi());
        assert!(!facts.memory_cgroup);
        assert!(facts.pi_needs_cgroup());
        assert_eq!(
            facts.cmdline_file.as_deref(),
            Some("/boot/firmware/cmdline.txt")
        );
        assert!(facts.sudo);
        assert_eq!(facts.installed_role(), None);
        assert_eq!(facts.config_hash, None);
    }

    #[test]
    fn installed_agent_facts() {
        let text =
            format!("{BARE}k3s_version=v1.31.4+k3s1\nunit_k3s-agent=active\nconfig_hash=00ff\n");
        let facts = Facts::parse(&text);
        assert_eq!(
            facts.k3s_version.as_ref().unwrap().to_string(),
            "v1.31.4+k3s1"
        );
        assert_eq!(facts.installed_role(), Some(Role::Agent));
        assert!(facts.service(Role::Agent).unwrap().active());
        assert_eq!(facts.config_hash.as_deref(), Some("00ff"));
    }

    #[test]
    fn unknown_architecture_is_kept_but_not_mapped() {
        let facts = Facts::parse("arch=mips\n");
        assert_eq!(facts.machine, "mips");
        assert_eq!(facts.arch, None);
    }
}
