//! The shell scripts `reset` runs on hosts (each one round trip, with sudo) and the parsing of
//! what they print: a survey of every k3s trace on a host, the uninstall, and the removal of
//! Node objects from a cluster that stays.
//!
//! A "trace" is anything k3s or edgeops leaves on a host: the k3s units and their env files and
//! drop-ins, the binary, its links and scripts (in `/usr/local/bin`, `/opt/bin` or the folder
//! the unit's `ExecStart` names: the installer's `INSTALL_K3S_BIN_DIR`), `/etc/rancher/k3s`,
//! `/etc/rancher/node`, `/var/lib/rancher/k3s`, `/run/k3s`, edgeops's own files, and running k3s
//! processes. A host without any is clean.

use crate::k3s::install::{AIRGAP_INSTALLER_PATH, CONFIG_HASH_PATH, CONFIG_PATH, TOKEN_FILE_PATH};
use crate::ssh::shell_quote;

use super::remote::VERSION_STAMP_PATH;

/// The folder edgeops uploads its own files to (air-gapped installer and artifacts).
pub const EDGEOPS_SHARE_DIR: &str = "/usr/local/share/edgeops";

/// Shell functions both scripts use: `dirs` (where the installer put its binaries), `k3s_pids`
/// and `traces` (one `kind=path` line per trace). The patterns are written so that the scripts'
/// own command lines never match them (`[k]3s`).
fn common() -> String {
    let edgeops_share = parent_dir(AIRGAP_INSTALLER_PATH);
    debug_assert_eq!(edgeops_share, EDGEOPS_SHARE_DIR);
    format!(
        r#"export LC_ALL=C PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
dirs=
for d in /usr/local/bin /opt/bin $(for u in /etc/systemd/system/k3s.service /etc/systemd/system/k3s-agent.service; do awk '/^ExecStart=/ {{ sub(/^ExecStart=/, ""); sub(/\/k3s$/, "", $1); print $1; exit }}' "$u" 2>/dev/null; done); do
  case " $dirs " in *" $d "*) ;; *) [ -d "$d" ] && dirs="$dirs $d" ;; esac
done
k3s_pids() {{
  {{
    pgrep -f '[k]3s (server|agent)' 2>/dev/null
    for p in /proc/[0-9]*; do
      case "$(readlink "$p/exe" 2>/dev/null)" in /var/lib/rancher/k3s/data/*) echo "${{p#/proc/}}" ;; esac
    done
  }} | sort -un
}}
k3s_link() {{ [ -L "$1" ] && case "$(readlink "$1")" in k3s|*/k3s) true ;; *) false ;; esac; }}
traces() {{
  for d in $dirs; do
    for f in k3s-agent-uninstall.sh k3s-uninstall.sh; do [ -f "$d/$f" ] && echo "script=$d/$f"; done
    for f in k3s k3s-killall.sh; do [ -e "$d/$f" ] && echo "bin=$d/$f"; done
    for f in kubectl crictl ctr; do k3s_link "$d/$f" && echo "bin=$d/$f"; done
  done
  for u in k3s k3s-agent; do
    [ -e "/etc/systemd/system/$u.service" ] && echo "unit=$u"
    for p in "/etc/systemd/system/$u.service" "/etc/systemd/system/$u.service.env" "/etc/systemd/system/$u.service.d"; do
      [ -e "$p" ] && echo "unit_file=$p"
    done
  done
  for p in {config} {token} {hash} {stamp} {share}; do [ -e "$p" ] && echo "edgeops=$p"; done
  for p in /etc/rancher/k3s /etc/rancher/node /var/lib/rancher/k3s /run/k3s; do [ -e "$p" ] && echo "data=$p"; done
  for p in $(k3s_pids); do echo "process=$p $(cat "/proc/$p/comm" 2>/dev/null)"; done
}}
"#,
        config = CONFIG_PATH,
        token = TOKEN_FILE_PATH,
        hash = CONFIG_HASH_PATH,
        stamp = VERSION_STAMP_PATH,
        share = EDGEOPS_SHARE_DIR,
    )
}

fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(dir, _)| dir)
}

/// The survey (sudo): every trace, and the installed k3s version (from edgeops's stamp when it
/// still matches the binary, else `k3s --version`).
pub fn survey_script() -> String {
    format!(
        "{common}traces\n\
         for d in $dirs; do\n\
         \x20 [ -x \"$d/k3s\" ] || continue\n\
         \x20 v=\n\
         \x20 if [ -r {stamp} ] && read -r sv ss sm <{stamp} && [ \"$(stat -c '%s %Y' \"$d/k3s\")\" = \"$ss $sm\" ]; then v=$sv; fi\n\
         \x20 [ -n \"$v\" ] || v=$(\"$d/k3s\" --version 2>/dev/null | awk '{{print $3; exit}}')\n\
         \x20 echo \"version=$v\"\n\
         \x20 break\n\
         done\n",
        common = common(),
        stamp = VERSION_STAMP_PATH,
    )
}

/// The uninstall (sudo), one round trip:
/// 1. the uninstall scripts the installer placed, agent's first (a host with both units keeps
///    the binary until the last one ran), each run with `sh`;
/// 2. whatever k3s still left (no script, a failed script, files the scripts keep such as
///    `/etc/rancher/node`): the installer's `k3s-killall.sh` when k3s still runs and it is
///    there, then explicitly: stop and disable the units and remove their files, stop (TERM,
///    then KILL) k3s processes, unmount k3s mounts, delete the CNI interfaces k3s makes, remove the
///    binaries and links, k3s's folders and edgeops's files;
/// 3. the survey again: anything left is printed `remaining=...` and the script exits 1.
///
/// Start and end are written to the host's journal (`logger -t edgeops`), so a host keeps a
/// record of who wiped its k3s and when. stdout lines: `used=SCRIPT`, `script_failed=SCRIPT
/// EXIT`, `fallback=WHAT`, `removed=PATH`, `remaining=TRACE`.
pub fn uninstall_script(run_id: &str) -> String {
    format!(
        "{common}set -u\n\
         run={run}\n\
         note() {{ logger -t edgeops -- \"$*\" 2>/dev/null || true; }}\n\
         removed() {{ echo \"removed=$1\"; }}\n\
         note \"reset run $run: removing k3s\"\n\
         for name in k3s-agent-uninstall.sh k3s-uninstall.sh; do\n\
         \x20 for d in $dirs; do\n\
         \x20   s=$d/$name\n\
         \x20   [ -f \"$s\" ] || continue\n\
         \x20   echo \"edgeops: running $s\" >&2\n\
         \x20   if sh \"$s\" </dev/null >&2; then echo \"used=$s\"; else echo \"script_failed=$s $?\"; fi\n\
         \x20 done\n\
         done\n\
         if [ -n \"$(k3s_pids)\" ] || [ -e /etc/systemd/system/k3s.service ] || [ -e /etc/systemd/system/k3s-agent.service ]; then\n\
         \x20 for d in $dirs; do\n\
         \x20   [ -f \"$d/k3s-killall.sh\" ] || continue\n\
         \x20   echo \"fallback=ran $d/k3s-killall.sh\"\n\
         \x20   sh \"$d/k3s-killall.sh\" </dev/null >&2 || true\n\
         \x20   break\n\
         \x20 done\n\
         fi\n\
         reload=0\n\
         for u in k3s-agent k3s; do\n\
         \x20 f=/etc/systemd/system/$u.service\n\
         \x20 if [ -e \"$f\" ]; then\n\
         \x20   echo \"fallback=stop and disable $u\"\n\
         \x20   systemctl stop \"$u\" >&2 2>&1 || true\n\
         \x20   systemctl disable \"$u\" >&2 2>&1 || true\n\
         \x20 fi\n\
         \x20 for p in \"$f\" \"$f.env\" \"$f.d\"; do\n\
         \x20   if [ -e \"$p\" ]; then rm -rf \"$p\" && removed \"$p\"; reload=1; fi\n\
         \x20 done\n\
         done\n\
         if [ \"$reload\" = 1 ]; then\n\
         \x20 systemctl daemon-reload >&2 2>&1 || true\n\
         \x20 systemctl reset-failed k3s k3s-agent >/dev/null 2>&1 || true\n\
         fi\n\
         pids=$(k3s_pids | tr '\\n' ' ')\n\
         if [ -n \"${{pids% }}\" ]; then\n\
         \x20 echo \"fallback=stop k3s processes $pids\"\n\
         \x20 kill $pids 2>/dev/null || true\n\
         \x20 i=0\n\
         \x20 while [ $i -lt 20 ] && [ -n \"$(k3s_pids)\" ]; do sleep 0.25; i=$((i + 1)); done\n\
         \x20 pids=$(k3s_pids | tr '\\n' ' ')\n\
         \x20 [ -z \"${{pids% }}\" ] || kill -9 $pids 2>/dev/null || true\n\
         fi\n\
         awk '{{print $2}}' /proc/self/mounts | grep -E '^(/run/k3s|/var/lib/rancher/k3s|/var/lib/kubelet|/run/netns/cni-)' | sort -r |\n\
         while read -r m; do\n\
         \x20 echo \"fallback=unmount $m\"\n\
         \x20 umount -f \"$m\" 2>/dev/null || umount -l \"$m\" 2>/dev/null || true\n\
         done\n\
         if command -v ip >/dev/null 2>&1; then\n\
         \x20 for i in cni0 flannel.1 flannel-v6.1 flannel-wg flannel-wg-v6 kube-ipvs0; do\n\
         \x20   ip link show \"$i\" >/dev/null 2>&1 && ip link delete \"$i\" && removed \"interface $i\"\n\
         \x20 done\n\
         fi\n\
         for d in $dirs; do\n\
         \x20 for f in k3s k3s-killall.sh k3s-uninstall.sh k3s-agent-uninstall.sh; do\n\
         \x20   [ -e \"$d/$f\" ] && rm -f \"$d/$f\" && removed \"$d/$f\"\n\
         \x20 done\n\
         \x20 for f in kubectl crictl ctr; do\n\
         \x20   k3s_link \"$d/$f\" && rm -f \"$d/$f\" && removed \"$d/$f\"\n\
         \x20 done\n\
         done\n\
         for p in /etc/rancher/k3s /etc/rancher/node /var/lib/rancher/k3s /var/lib/kubelet /run/k3s /run/flannel {share}; do\n\
         \x20 [ -e \"$p\" ] && rm -rf \"$p\" && removed \"$p\"\n\
         done\n\
         for p in /etc/rancher /var/lib/rancher; do\n\
         \x20 [ -d \"$p\" ] && rmdir \"$p\" 2>/dev/null && removed \"$p\"\n\
         done\n\
         left=$(traces)\n\
         if [ -n \"$left\" ]; then\n\
         \x20 printf '%s\\n' \"$left\" | sed 's/^/remaining=/'\n\
         \x20 note \"reset run $run: failed, k3s traces remain\"\n\
         \x20 exit 1\n\
         fi\n\
         note \"reset run $run: k3s removed\"\n",
        common = common(),
        run = shell_quote(run_id),
        share = EDGEOPS_SHARE_DIR,
    )
}

/// Delete the Node objects of hosts that left a cluster which stays (run on the first server,
/// sudo): k3s then forgets their node password (and an etcd member), so a re-flashed board
/// rejoins under the same name. Prints `deleted=NAME`, `absent=NAME` or `failed=NAME`.
pub fn delete_nodes_script(nodes: &[String]) -> String {
    let names: Vec<String> = nodes.iter().map(|n| shell_quote(n)).collect();
    format!(
        "for n in {}; do\n\
         \x20 if ! k3s kubectl get node \"$n\" >/dev/null 2>&1; then echo \"absent=$n\"\n\
         \x20 elif k3s kubectl delete node \"$n\" >&2; then echo \"deleted=$n\"\n\
         \x20 else echo \"failed=$n\"; fi\n\
         done\n",
        names.join(" ")
    )
}

/// What a survey found on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Survey {
    /// Installed units: `k3s` (server) and/or `k3s-agent`.
    pub units: Vec<String>,
    /// The installed k3s version, if a binary is there.
    pub version: Option<String>,
    /// Uninstall scripts found (paths), agent's first.
    pub scripts: Vec<String>,
    /// k3s binary, killall script and k3s links.
    pub binaries: Vec<String>,
    pub unit_files: Vec<String>,
    /// k3s folders: `/etc/rancher/k3s`, `/etc/rancher/node`, `/var/lib/rancher/k3s`, `/run/k3s`.
    pub data: Vec<String>,
    /// Files edgeops wrote: config, token, config hash, version stamp, its share folder.
    pub edgeops_files: Vec<String>,
    /// Running k3s processes (`PID COMMAND-NAME`; never their arguments).
    pub processes: Vec<String>,
}

impl Survey {
    pub fn parse(stdout: &str) -> Survey {
        let mut survey = Survey::default();
        for line in stdout.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().to_owned();
            if value.is_empty() {
                continue;
            }
            let list = match key.trim() {
                "unit" => &mut survey.units,
                "script" => &mut survey.scripts,
                "bin" => &mut survey.binaries,
                "unit_file" => &mut survey.unit_files,
                "data" => &mut survey.data,
                "edgeops" => &mut survey.edgeops_files,
                "process" => &mut survey.processes,
                "version" => {
                    survey.version = Some(value);
                    continue;
                }
                _ => continue,
            };
            if !list.contains(&value) {
                list.push(value);
            }
        }
        survey
    }

    /// No trace of k3s or edgeops.
    pub fn is_clean(&self) -> bool {
        self.units.is_empty()
            && self.scripts.is_empty()
            && self.binaries.is_empty()
            && self.unit_files.is_empty()
            && self.data.is_empty()
            && self.edgeops_files.is_empty()
            && self.processes.is_empty()
    }

    /// `server v1.31.4+k3s1`, `agent`, `server+agent`, `leftovers` (no unit), or `-` (clean).
    pub fn installed(&self) -> String {
        let role = match (
            self.units.iter().any(|u| u == "k3s"),
            self.units.iter().any(|u| u == "k3s-agent"),
        ) {
            (true, true) => "server+agent",
            (true, false) => "server",
            (false, true) => "agent",
            (false, false) if self.is_clean() => return "-".to_owned(),
            (false, false) => "leftovers",
        };
        match &self.version {
            Some(v) => format!("{role} {v}"),
            None => role.to_owned(),
        }
    }

    /// How the uninstall will go: the scripts, or the explicit fallback when k3s remains
    /// without one.
    pub fn method(&self) -> String {
        if self.is_clean() {
            return "-".to_owned();
        }
        if self.scripts.is_empty() {
            return "no uninstall script: stop units and processes, remove files".to_owned();
        }
        self.scripts.join(" then ")
    }

    /// What will be wiped, short: folders, unit and binary counts, edgeops files.
    pub fn wipes(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !self.units.is_empty() {
            parts.push(format!("unit {}", self.units.join(", ")));
        }
        if !self.processes.is_empty() {
            parts.push(format!("{} process(es)", self.processes.len()));
        }
        if !self.binaries.is_empty() {
            parts.push(format!("{} binaries/links", self.binaries.len()));
        }
        parts.extend(self.data.iter().cloned());
        if !self.edgeops_files.is_empty() {
            let names: Vec<&str> = self
                .edgeops_files
                .iter()
                .map(|p| p.rsplit('/').next().unwrap_or(p))
                .collect();
            parts.push(format!("edgeops files ({})", names.join(" ")));
        }
        if parts.is_empty() {
            "nothing (already clean)".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// What the uninstall script printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UninstallOutput {
    pub used: Vec<String>,
    pub script_failed: Vec<String>,
    pub fallback: Vec<String>,
    pub removed: Vec<String>,
    pub remaining: Vec<String>,
}

impl UninstallOutput {
    pub fn parse(stdout: &str) -> UninstallOutput {
        let mut out = UninstallOutput::default();
        for line in stdout.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let list = match key {
                "used" => &mut out.used,
                "script_failed" => &mut out.script_failed,
                "fallback" => &mut out.fallback,
                "removed" => &mut out.removed,
                "remaining" => &mut out.remaining,
                _ => continue,
            };
            list.push(value.trim().to_owned());
        }
        out
    }

    /// How k3s was removed, for the report.
    pub fn method(&self) -> String {
        let scripts = |list: &[String]| {
            list.iter()
                .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
                .collect::<Vec<_>>()
                .join(" + ")
        };
        let mut parts = Vec::new();
        if !self.used.is_empty() {
            parts.push(scripts(&self.used));
        }
        if !self.script_failed.is_empty() {
            parts.push(format!("{} failed", scripts(&self.script_failed)));
        }
        if !self.fallback.is_empty() || self.used.is_empty() {
            let killall = self
                .fallback
                .iter()
                .any(|f| f.starts_with("ran ") && f.ends_with("k3s-killall.sh"));
            parts.push(format!(
                "{}: {}units stopped, processes killed, files removed",
                if self.used.is_empty() && self.script_failed.is_empty() {
                    "no uninstall script"
                } else {
                    "finished by hand"
                },
                if killall { "k3s-killall.sh, " } else { "" }
            ));
        }
        parts.join("; ")
    }
}

/// Node deletion answers: (deleted, absent, failed) node names.
pub fn parse_deleted(stdout: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut deleted, mut absent, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for line in stdout.lines() {
        match line.split_once('=') {
            Some(("deleted", n)) => deleted.push(n.to_owned()),
            Some(("absent", n)) => absent.push(n.to_owned()),
            Some(("failed", n)) => failed.push(n.to_owned()),
            _ => {}
        }
    }
    (deleted, absent, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survey_of_an_installed_agent() {
        let out = "script=/usr/local/bin/k3s-agent-uninstall.sh\nbin=/usr/local/bin/k3s\n\
                   bin=/usr/local/bin/kubectl\nunit=k3s-agent\n\
                   unit_file=/etc/systemd/system/k3s-agent.service\n\
                   edgeops=/etc/rancher/k3s/config.yaml\nedgeops=/etc/rancher/k3s/edgeops-token\n\
                   data=/etc/rancher/k3s\ndata=/var/lib/rancher/k3s\n\
                   process=812 /usr/local/bin/k3s agent\nversion=v1.31.4+k3s1\n";
        let s = Survey::parse(out);
        assert!(!s.is_clean());
        assert_eq!(s.installed(), "agent v1.31.4+k3s1");
        assert_eq!(s.method(), "/usr/local/bin/k3s-agent-uninstall.sh");
        let wipes = s.wipes();
        assert!(wipes.contains("unit k3s-agent"), "{wipes}");
        assert!(wipes.contains("/var/lib/rancher/k3s"), "{wipes}");
        assert!(
            wipes.contains("edgeops files (config.yaml edgeops-token)"),
            "{wipes}"
        );
    }

    #[test]
    fn clean_and_leftover_hosts() {
        let clean = Survey::parse("");
        assert!(clean.is_clean());
        assert_eq!(clean.installed(), "-");
        assert_eq!(clean.wipes(), "nothing (already clean)");
        let left = Survey::parse("data=/etc/rancher/node\n");
        assert!(!left.is_clean());
        assert_eq!(left.installed(), "leftovers");
        assert!(left.method().starts_with("no uninstall script"));
    }

    #[test]
    fn uninstall_methods() {
        let ok = UninstallOutput::parse(
            "used=/usr/local/bin/k3s-uninstall.sh\nremoved=/etc/rancher/node\n",
        );
        assert_eq!(ok.method(), "k3s-uninstall.sh");
        assert_eq!(ok.removed, ["/etc/rancher/node"]);
        let by_hand =
            UninstallOutput::parse("fallback=stop and disable k3s\nremoved=/usr/local/bin/k3s\n");
        assert_eq!(
            by_hand.method(),
            "no uninstall script: units stopped, processes killed, files removed"
        );
        let killall = UninstallOutput::parse(
            "fallback=ran /usr/local/bin/k3s-killall.sh\nremoved=/usr/local/bin/k3s\n",
        );
        assert_eq!(
            killall.method(),
            "no uninstall script: k3s-killall.sh, units stopped, processes killed, files removed"
        );
        let failed = UninstallOutput::parse(
            "script_failed=/opt/bin/k3s-uninstall.sh 1\nfallback=stop k3s processes 12\nremaining=bin=/opt/bin/k3s\n",
        );
        assert!(failed.method().contains("failed; finished by hand"));
        assert_eq!(failed.remaining, ["bin=/opt/bin/k3s"]);
    }

    #[test]
    fn scripts_are_valid_posix_sh() {
        for script in [
            survey_script(),
            uninstall_script("r1"),
            delete_nodes_script(&["n1".into()]),
        ] {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn scripts_never_match_themselves() {
        // The process patterns must not find the script's own `sh -c` command line.
        for script in [survey_script(), uninstall_script("r1")] {
            assert!(!script.contains("k3s server"));
            assert!(!script.contains("k3s agent"));
        }
        let del = delete_nodes_script(&["lab-02".into(), "odd'name".into()]);
        assert!(del.contains("for n in lab-02 'odd'\\''name'; do"), "{del}");
        let (d, a, f) = parse_deleted("deleted=lab-02\nabsent=lab-03\nfailed=x\n");
        assert_eq!(
            (d, a, f),
            (
                vec!["lab-02".into()],
                vec!["lab-03".into()],
                vec!["x".into()]
            )
        );
    }
}
