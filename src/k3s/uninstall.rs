//! What k3s leaves on a host and how it is removed: the shell scripts `reset` runs on hosts
//! (each one round trip, with sudo) and the parsing of what they print: a survey of every k3s
//! trace on a host, the uninstall, and the removal of Node objects from a cluster that stays.
//!
//! A "trace" is anything k3s or edgeops leaves on a host: the k3s units and their env files and
//! drop-ins, the binary, its links and scripts (in `/usr/local/bin`, `/opt/bin` or the folder
//! the unit's `ExecStart` names: the installer's `INSTALL_K3S_BIN_DIR`), `/etc/rancher/k3s`,
//! `/etc/rancher/node`, `/var/lib/rancher/k3s`, `/run/k3s`, edgeops's own files, and running k3s
//! processes. A host without any is clean.

use super::install::{AIRGAP_INSTALLER_PATH, CONFIG_HASH_PATH, CONFIG_PATH, TOKEN_FILE_PATH};
use crate::shell::{shell_quote, with_vars};

use super::install::VERSION_STAMP_PATH;

/// The folder edgeops uploads its own files to (air-gapped installer and artifacts).
pub const EDGEOPS_SHARE_DIR: &str = "/usr/local/share/edgeops";

/// Shell functions both scripts use: `dirs` (where the installer put its binaries), `k3s_pids`
/// and `traces` (one `kind=path` line per trace). The patterns are written so that the scripts'
/// own command lines never match them (`[k]3s`).
fn common() -> String {
    let edgeops_share = parent_dir(AIRGAP_INSTALLER_PATH);
    debug_assert_eq!(edgeops_share, EDGEOPS_SHARE_DIR);
    let edgeops_files = [
        CONFIG_PATH,
        TOKEN_FILE_PATH,
        CONFIG_HASH_PATH,
        VERSION_STAMP_PATH,
        EDGEOPS_SHARE_DIR,
    ]
    .join(" ");
    with_vars(
        &[("edgeops_files", &edgeops_files)],
        include_str!("sh/reset-common.sh"),
    )
}

fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(dir, _)| dir)
}

/// The survey (sudo): every trace, and the installed k3s version (from edgeops's stamp when it
/// still matches the binary, else `k3s --version`).
pub fn survey_script() -> String {
    common()
        + &with_vars(
            &[("stamp_file", VERSION_STAMP_PATH)],
            include_str!("sh/reset-survey.sh"),
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
    common()
        + &with_vars(
            &[("run", run_id), ("share_dir", EDGEOPS_SHARE_DIR)],
            include_str!("sh/reset-uninstall.sh"),
        )
}

/// Delete the Node objects of hosts that left a cluster which stays (run on the first server,
/// sudo): k3s then forgets their node password (and an etcd member), so a re-flashed board
/// rejoins under the same name. Prints `deleted=NAME`, `absent=NAME` or `failed=NAME`.
pub fn delete_nodes_script(nodes: &[String]) -> String {
    let names: Vec<String> = nodes.iter().map(|n| shell_quote(n)).collect();
    format!(
        "set -- {}\n{}",
        names.join(" "),
        include_str!("sh/reset-delete-nodes.sh")
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
        assert!(del.starts_with("set -- lab-02 'odd'\\''name'\n"), "{del}");
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

    /// The delete script run for real against a stub `k3s` that knows one node.
    #[test]
    fn delete_nodes_script_reports_each_node() {
        let dir = tempfile::tempdir().unwrap();
        let stub = dir.path().join("k3s");
        std::fs::write(
            &stub,
            "#!/bin/sh\n[ \"$3\" = node ] || exit 2\ncase \"$4\" in lab-02) exit 0 ;; \"odd'name\") [ \"$2\" = get ] ;; *) exit 1 ;; esac\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = delete_nodes_script(&["lab-02".into(), "gone".into(), "odd'name".into()]);
        let out = std::process::Command::new("sh")
            .args(["-c", &script, "edgeops-test"])
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "deleted=lab-02\nabsent=gone\nfailed=odd'name\n"
        );
    }
}
