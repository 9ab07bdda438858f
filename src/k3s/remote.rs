//! The shell scripts that install, restart and read k3s on a host (for `up`, `upgrade` and the
//! Day-2 commands), each built so one step costs one round trip, and the parsing of what they
//! print. Secrets only ever travel on stdin: no script text holds one.

use std::time::Duration;

use super::JoinToken;
use super::install::{CONFIG_HASH_PATH, CONFIG_PATH, InstallSpec, TOKEN_FILE_PATH};
use crate::shell::{shell_quote, with_vars};

/// Where a server keeps the join token (k3s contract).
pub const NODE_TOKEN_PATH: &str = "/var/lib/rancher/k3s/server/node-token";
/// The k3s admin kubeconfig on a server.
pub const K3S_KUBECONFIG_PATH: &str = "/etc/rancher/k3s/k3s.yaml";
pub use super::install::VERSION_STAMP_PATH;

/// Install (or re-install with a changed config) in one round trip, run with sudo.
/// stdin: the join token on the first line (empty: keep the token file as is), then one base64
/// line per further file of the spec (registries, manifests, sysctls), then the config file.
/// The token file, the further files and the config are all 0600 from their creation (mktemp
/// under umask 077, before any byte is written; an older file's mode is tightened too: a config
/// may hold what k3s treats as secret) and written only when their content differs;
/// `restart_on_change` restarts the service when the config or a registries file changed (the
/// installer alone would
/// not notice: it only compares binary, unit and env file). The config hash is recorded last,
/// only after everything succeeded, so a failed host is retried by the next run. The folder is
/// created world-readable, as k3s makes it, so the facts script reads the hash without sudo.
pub fn install_bundle(spec: &InstallSpec, restart_on_change: bool) -> String {
    let managed_files = managed_files_script(spec);
    let user_kubeconfig = if spec.user_kubeconfig {
        user_kubeconfig_script()
    } else {
        String::new()
    };
    with_vars(
        &[
            ("token_file", TOKEN_FILE_PATH),
            ("config", CONFIG_PATH),
            ("hash_file", CONFIG_HASH_PATH),
            ("stamp_file", VERSION_STAMP_PATH),
            ("k3s_installer", &spec.install_script()),
            ("restart", if restart_on_change { "1" } else { "0" }),
            ("unit", unit_name(spec)),
            ("config_hash", &spec.config_hash),
            ("managed_files", &managed_files),
            ("firewall", spec.firewall.as_deref().unwrap_or("")),
            ("user_kubeconfig", &user_kubeconfig),
        ],
        include_str!("sh/install.sh"),
    )
}

/// The part of [`install_bundle`] that writes the spec's further files (registries.yaml and its
/// TLS files, auto-deploy manifests), each read from stdin as one base64 line, 0600, only when
/// its content differs (a registries file then sets `changed=1`: k3s reads it only at start;
/// manifests are picked up live). Without `[registries]`, a `registries.yaml` edgeops wrote (its
/// first line is edgeops's header) is removed with the TLS folder; a hand-written one stays.
fn managed_files_script(spec: &InstallSpec) -> String {
    use crate::k3s::registries::{HEADER, REGISTRIES_PATH, TLS_DIR};
    let mut script = String::new();
    if !spec.files.iter().any(|f| f.path == REGISTRIES_PATH) {
        script.push_str(&format!(
            "if [ -f {reg} ] && [ \"$(head -n 1 {reg})\" = {header} ]; then\n\
             \x20 rm -f {reg}; rm -rf {tls}; changed=1; echo 'edgeops: {reg} removed'\n\
             fi\n",
            reg = REGISTRIES_PATH,
            header = shell_quote(HEADER.trim_end()),
            tls = TLS_DIR,
        ));
    }
    for file in &spec.files {
        let path = shell_quote(&file.path);
        let changed = if file.restart { "changed=1; " } else { "" };
        let after = file
            .after_write
            .map(|cmd| format!("{cmd}; "))
            .unwrap_or_default();
        script.push_str(&format!(
            "IFS= read -r b64\n\
             d=$(dirname {path})\n\
             (umask 022; mkdir -p \"$d\")\n\
             f=$(mktemp \"$d/.edgeops-file.XXXXXX\")\n\
             printf '%s' \"$b64\" | base64 -d >\"$f\"\n\
             chmod 0600 \"$f\"\n\
             if cmp -s \"$f\" {path} && [ \"$(stat -c %a {path})\" = 600 ]; then rm -f \"$f\"\n\
             else mv -f \"$f\" {path}; {changed}{after}echo 'edgeops: {shown} written'; fi\n",
            shown = file.path,
        ));
    }
    if !spec.files.is_empty() {
        script.push_str("unset b64\n");
    }
    script
}

/// How long a server's install step waits for k3s to write its admin kubeconfig before it can
/// copy it for the login user (`user_kubeconfig`); k3s writes it early in its start.
pub const USER_KUBECONFIG_WAIT: Duration = Duration::from_secs(60);

/// Copy `/etc/rancher/k3s/k3s.yaml` to the login user's `~/.kube/config` (the user sudo was
/// called by, or root), 0600 and owned by them, only when it differs. Exit 4 when k3s did not
/// write it within [`USER_KUBECONFIG_WAIT`].
fn user_kubeconfig_script() -> String {
    format!(
        "u=${{SUDO_USER:-$(id -un)}}\n\
         g=$(id -gn \"$u\")\n\
         home=$(getent passwd \"$u\" | cut -d: -f6)\n\
         deadline=$(( $(date +%s) + {secs} ))\n\
         until [ -s {kc} ]; do\n\
         \x20 if [ \"$(date +%s)\" -ge \"$deadline\" ]; then\n\
         \x20   echo \"edgeops: {kc} did not appear within {secs}s; no kubeconfig for $u\" >&2\n\
         \x20   exit 4\n\
         \x20 fi\n\
         \x20 sleep 1\n\
         done\n\
         install -d -m 0700 -o \"$u\" -g \"$g\" \"$home/.kube\"\n\
         kc_tmp=$(mktemp \"$home/.kube/.config.XXXXXX\")\n\
         cat {kc} >\"$kc_tmp\"\n\
         chown \"$u:$g\" \"$kc_tmp\"\n\
         chmod 0600 \"$kc_tmp\"\n\
         if cmp -s \"$kc_tmp\" \"$home/.kube/config\"; then rm -f \"$kc_tmp\"\n\
         else mv -f \"$kc_tmp\" \"$home/.kube/config\"; echo \"edgeops: $home/.kube/config written for $u\"; fi\n",
        secs = USER_KUBECONFIG_WAIT.as_secs(),
        kc = K3S_KUBECONFIG_PATH,
    )
}

/// stdin for [`install_bundle`]: never part of a command line, so never in `ps`.
pub fn install_stdin(token: Option<&JoinToken>, spec: &InstallSpec) -> Vec<u8> {
    let mut bytes = match token {
        Some(token) => token.file_contents().into_bytes(),
        None => b"\n".to_vec(),
    };
    for file in &spec.files {
        bytes.extend_from_slice(data_encoding::BASE64.encode(&file.contents).as_bytes());
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(spec.config_yaml.as_bytes());
    bytes
}

pub fn unit_name(spec: &InstallSpec) -> &'static str {
    match spec.role {
        crate::inventory::Role::Server => "k3s",
        crate::inventory::Role::Agent => "k3s-agent",
    }
}

/// Restart a service whose config is current but which is not running.
pub fn restart_script(unit: &str) -> String {
    format!("systemctl restart {unit}")
}

/// Add the memory cgroup flags to a Raspberry Pi's `cmdline.txt` and reboot it (sudo). The file
/// must stay one line: only its first line is kept, with the missing flags appended; it stays
/// world-readable (0644, as the image ships it) so the facts script can check it without sudo. A backup of
/// the original is kept next to it once. The reboot is started in the background so the command
/// itself returns before sshd goes away.
pub fn pi_cgroup_script(cmdline_file: &str) -> String {
    with_vars(&[("f", cmdline_file)], include_str!("sh/pi-cgroup.sh"))
}

/// The kernel's boot id: it changes at every boot.
pub const BOOT_ID_COMMAND: &str = "cat /proc/sys/kernel/random/boot_id";

/// What to read from the first server once its API answers.
#[derive(Debug, Clone, Copy)]
pub struct ApiRead {
    pub token: bool,
    pub kubeconfig: bool,
}

/// The API wait alone (given: `secs`, `token`): exit 3 when the API did not answer in time.
/// [`api_script`] and restore's first-server script end with it.
pub const API_WAIT_SH: &str = include_str!("sh/api-wait.sh");

/// Wait (on the server, no round trip per try) until the API answers, then print the requested
/// files between markers. Run with sudo. Exit 3 = the API did not come up in time.
pub fn api_script(wait: Duration, read: ApiRead) -> String {
    let mut script = with_vars(
        &[
            ("secs", &wait.as_secs().max(1).to_string()),
            ("token", NODE_TOKEN_PATH),
        ],
        API_WAIT_SH,
    );
    if read.token {
        script.push_str(&format!("echo '--- token'\ncat {NODE_TOKEN_PATH}\n"));
    }
    if read.kubeconfig {
        script.push_str(&format!(
            "echo '--- kubeconfig'\ncat {K3S_KUBECONFIG_PATH}\n"
        ));
    }
    script
}

/// Split [`api_script`] output into its token and kubeconfig parts.
pub fn parse_api_output(stdout: &str) -> (Option<String>, Option<String>) {
    let mut token = None;
    let mut kubeconfig = None;
    let mut current: Option<&mut Option<String>> = None;
    for line in stdout.split_inclusive('\n') {
        match line.trim_end() {
            "--- token" => current = Some(&mut token),
            "--- kubeconfig" => current = Some(&mut kubeconfig),
            _ => {
                if let Some(slot) = current.as_deref_mut() {
                    slot.get_or_insert_with(String::new).push_str(line);
                }
            }
        }
    }
    (token.map(|t| t.trim().to_owned()), kubeconfig)
}

/// The node list, read on the first server (sudo: the admin kubeconfig is 0600).
pub const NODES_COMMAND: &str = "k3s kubectl get nodes -o json";

/// The install bundle of `up` at the spec's (new) version, then a restart of the service
/// unless the installer restarted it. The installer restarts only when the binary, unit or env
/// file changed during its run; it does not when the binary was already in place: put there
/// by an earlier install that failed before its restart, or by the air-gap upload (the k3s
/// docs' air-gap upgrade also ends with a restart). The main PID tells.
pub fn upgrade_script(spec: &InstallSpec) -> String {
    let unit = unit_name(spec);
    format!(
        "pid_before=$(systemctl show -p MainPID --value {unit} 2>/dev/null || echo 0)\n\
         {bundle}         pid_after=$(systemctl show -p MainPID --value {unit} 2>/dev/null || echo 0)\n\
         if [ \"$pid_after\" = \"$pid_before\" ]; then\n\
         \x20 echo 'edgeops: the installer left {unit} running as it was; restarting it'\n\
         \x20 systemctl restart {unit}\n\
         fi\n",
        bundle = install_bundle(spec, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_output_splits_into_token_and_kubeconfig() {
        let out =
            "--- token\nK10abc::server:s3cret\n--- kubeconfig\napiVersion: v1\nkind: Config\n";
        let (token, kubeconfig) = parse_api_output(out);
        assert_eq!(token.as_deref(), Some("K10abc::server:s3cret"));
        assert_eq!(
            kubeconfig.as_deref(),
            Some("apiVersion: v1\nkind: Config\n")
        );
    }

    /// The API wait, run for real with no API: exit 3 after its limit, with the reason.
    #[test]
    fn api_wait_gives_up_after_its_limit_with_exit_3() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("node-token");
        let script = api_script(
            Duration::from_secs(1),
            ApiRead {
                token: true,
                kubeconfig: false,
            },
        )
        .replace(NODE_TOKEN_PATH, token.to_str().unwrap());
        let started = std::time::Instant::now();
        let out = crate::shell::run_locally(&script, b"");
        assert_eq!(out.status.code(), Some(3));
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("edgeops: the k3s API did not answer within 1s")
        );
    }

    #[test]
    fn the_upgrade_script_restarts_only_a_service_the_installer_left_alone() {
        let inventory = crate::k3s::test_inventory::pi_inventory();
        let host = inventory.hosts[1].clone();
        let join = crate::k3s::install::Join::for_host(&inventory, &host).unwrap();
        let version: crate::k3s::K3sVersion = "v1.31.4+k3s1".parse().unwrap();
        let spec = InstallSpec::new(
            &inventory,
            &host,
            join,
            &version,
            &crate::render::Renderer::builtin(),
        )
        .unwrap();
        let unit = unit_name(&spec);
        let script = upgrade_script(&spec);
        assert!(script.starts_with(&format!(
            "pid_before=$(systemctl show -p MainPID --value {unit}"
        )));
        assert!(script.contains("INSTALL_K3S_VERSION=v1.31.4+k3s1"));
        assert!(script.contains("if [ \"$pid_after\" = \"$pid_before\" ]; then"));
        assert!(script.trim_end().ends_with("fi"));
    }
}
