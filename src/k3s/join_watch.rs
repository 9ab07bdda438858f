//! Watching a k3s service start while the installer (or a restart) waits for it: a join k3s
//! refuses never ends on its own, so the host-side script stops it and says why.
//!
//! Real k3s does not exit when a join is refused (a wrong token, a token whose CA hash is
//! another cluster's, a node name registered with another node password, a server it cannot
//! reach): it logs the reason and retries every few seconds without ever telling systemd it is
//! ready. With the installer's unit (`Type=notify`, `TimeoutStartSec=0`) the installer's
//! `systemctl restart` then never returns. [`watched`] runs the install in the background and
//! polls the unit and its journal: a refusal k3s logged stops it at once; a unit still starting
//! after `join_timeout` stops it too. Stopping the unit cancels the pending start job, so the
//! installer's `systemctl restart` returns and nothing edgeops started keeps running.
//! Also here: the SSH bound of an install under the watch ([`install_timeout`]) and the
//! explained reason of a stop ([`stopped_reason`]).

use std::time::Duration;

use crate::inventory::{Host, Inventory};

use super::install::{self, InstallSpec};
use super::remote::unit_name;

/// Exit status of a watched script whose service was stopped by the watch.
pub const STOPPED_EXIT: u32 = 86;

/// Why a watched start was stopped, from the journal lines k3s wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefusal {
    /// The server answered `401 Unauthorized`: the token's secret is not the cluster's.
    TokenRejected,
    /// `token CA hash does not match the Cluster CA certificate hash`.
    CaMismatch,
    /// `Node password rejected, duplicate hostname ...`: the node name is taken.
    NodeNameTaken,
    /// `bootstrap data already found and encrypted with different token` (a server).
    BootstrapToken,
    /// The server refused a kubelet newer than itself (version skew).
    TooNew,
    /// Still starting when the limit ran out; k3s's last lines said it cannot reach the server.
    Unreachable,
    /// Still starting when the limit ran out, for no reason k3s logged that edgeops knows.
    TimedOut,
}

impl JoinRefusal {
    fn from_word(word: &str) -> Option<JoinRefusal> {
        Some(match word {
            "token" => JoinRefusal::TokenRejected,
            "ca" => JoinRefusal::CaMismatch,
            "nodename" => JoinRefusal::NodeNameTaken,
            "bootstrap" => JoinRefusal::BootstrapToken,
            "skew" => JoinRefusal::TooNew,
            "unreachable" => JoinRefusal::Unreachable,
            "timeout" => JoinRefusal::TimedOut,
            _ => return None,
        })
    }
}

/// What the watch reported: why, and the k3s log line that says so (when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinStopped {
    pub why: JoinRefusal,
    pub line: Option<String>,
}

/// Where the joining node was sent, to explain a refusal.
pub struct JoinContext<'a> {
    pub host: &'a str,
    pub unit: &'a str,
    pub node_name: &'a str,
    /// `https://SERVER:6443` the node joins through (`None` for the first server).
    pub server_url: Option<&'a str>,
    /// The first server's name, and whether `server_url` is its address.
    pub first_server: &'a str,
    pub url_is_first_server: bool,
    pub limit: Duration,
}

impl JoinStopped {
    /// The report line: what k3s logged, what it means and what to do.
    pub fn explain(&self, cx: &JoinContext<'_>) -> String {
        let limit = humantime::format_duration(cx.limit);
        let server = cx.server_url.unwrap_or("its server");
        let logged = self
            .line
            .as_deref()
            .map(|l| format!(" (k3s logged: {l})"))
            .unwrap_or_default();
        let what = match self.why {
            JoinRefusal::TokenRejected => format!(
                "{server} rejected the join token{logged}; edgeops stopped {unit}. Give the cluster's \
                 token in [cluster] token_env/token_file (it is /var/lib/rancher/k3s/server/token on \
                 {first}), or leave both unset so edgeops reads it from {first}",
                unit = cx.unit,
                first = cx.first_server
            ),
            JoinRefusal::CaMismatch => format!(
                "the token's CA hash is not the CA of the cluster at {server}{logged}: the token is \
                 another (or a re-created) cluster's; edgeops stopped {unit}. Use the token of this \
                 cluster (/var/lib/rancher/k3s/server/token on {first})",
                unit = cx.unit,
                first = cx.first_server
            ),
            JoinRefusal::NodeNameTaken => format!(
                "node name {node} is already registered by another machine (node password \
                 rejected){logged}; edgeops stopped {unit}. If that machine is gone, delete its \
                 Node (`edgeops reset --limit {host}` or `kubectl delete node {node}`) and run again; \
                 else give this host another node name",
                node = cx.node_name,
                unit = cx.unit,
                host = cx.host
            ),
            JoinRefusal::BootstrapToken => format!(
                "k3s refused to start: the datastore is encrypted with another token{logged}; \
                 edgeops stopped {unit}. Put the cluster's token back in the inventory, or rotate it \
                 with `edgeops up --rotate-join-token`",
                unit = cx.unit
            ),
            JoinRefusal::TooNew => format!(
                "{server} refused this node: its k3s is newer than the servers'{logged}; edgeops \
                 stopped {unit}. Upgrade the servers first (agents never run newer than servers)",
                unit = cx.unit
            ),
            JoinRefusal::Unreachable if cx.url_is_first_server => format!(
                "the first server {first} ({server}) did not answer for {limit} (join_timeout){logged}; \
                 edgeops stopped {unit}. Bring {first} back and run again",
                first = cx.first_server,
                unit = cx.unit
            ),
            JoinRefusal::Unreachable => format!(
                "{server} did not answer for {limit} (join_timeout){logged}; edgeops stopped {unit}. \
                 Check that this host reaches it on port 6443 and run again",
                unit = cx.unit
            ),
            JoinRefusal::TimedOut => format!(
                "{unit} was still starting after {limit} (join_timeout){logged}; edgeops stopped it. \
                 Raise [cluster] join_timeout for slow boards, or look at `journalctl -u {unit}` on {host}",
                unit = cx.unit,
                host = cx.host
            ),
        };
        format!("join refused: {what}")
    }
}

/// Read the watch's report from a script's stderr (`None`: the watch did not stop it).
pub fn parse(stderr: &str) -> Option<JoinStopped> {
    let mut why = None;
    let mut line = None;
    for l in stderr.lines() {
        if let Some(word) = l.strip_prefix("edgeops-join: ") {
            why = JoinRefusal::from_word(word.trim());
        } else if let Some(text) = l.strip_prefix("edgeops-join-log: ") {
            let text = text.trim();
            if !text.is_empty() {
                line = Some(text.to_owned());
            }
        }
    }
    why.map(|why| JoinStopped { why, line })
}

/// Run `body` (a script that installs or restarts `unit`; it may read stdin) in the background
/// and watch `unit` meanwhile. Ends with `body`'s status, or with [`STOPPED_EXIT`] and the
/// report lines for [`parse`] on stderr once the unit was stopped: at once on a refusal k3s
/// logged, or when it was still `activating` after `limit`.
pub fn watched(body: &str, unit: &str, limit: Duration) -> String {
    format!(
        "jw_unit={unit}\n\
         jw_limit={limit}\n\
         jw_since=$(date +%s)\n\
         exec 3<&0\n\
         (\n\
         exec 0<&3 3<&-\n\
         {body}\n\
         ) &\n\
         jw_pid=$!\n\
         exec 3<&-\n\
         jw_why=''; jw_line=''; jw_start=''\n\
         jw_refused='token CA hash does not match|Node password rejected|401 Unauthorized|encrypted with different token|newer than the API server'\n\
         jw_unreachable='failed to get CA certs|connection refused|no route to host|i/o timeout|network is unreachable'\n\
         while kill -0 \"$jw_pid\" 2>/dev/null; do\n\
         \x20 sleep 1\n\
         \x20 [ \"$(systemctl show -p ActiveState --value \"$jw_unit\" 2>/dev/null)\" = activating ] || {{ jw_start=''; continue; }}\n\
         \x20 jw_now=$(date +%s)\n\
         \x20 [ -n \"$jw_start\" ] || jw_start=$jw_now\n\
         \x20 jw_log=$(journalctl -u \"$jw_unit\" --since \"@$jw_since\" -o cat --no-pager 2>/dev/null | tail -n 200)\n\
         \x20 jw_line=$(printf '%s\\n' \"$jw_log\" | grep -E \"$jw_refused\" | tail -n 1)\n\
         \x20 if [ -n \"$jw_line\" ]; then\n\
         \x20   case \"$jw_line\" in\n\
         \x20     *'token CA hash does not match'*) jw_why=ca ;;\n\
         \x20     *'Node password rejected'*) jw_why=nodename ;;\n\
         \x20     *'encrypted with different token'*) jw_why=bootstrap ;;\n\
         \x20     *'newer than the API server'*) jw_why=skew ;;\n\
         \x20     *) jw_why=token ;;\n\
         \x20   esac\n\
         \x20   break\n\
         \x20 fi\n\
         \x20 if [ $((jw_now - jw_start)) -ge \"$jw_limit\" ]; then\n\
         \x20   jw_line=$(printf '%s\\n' \"$jw_log\" | grep -E \"$jw_unreachable\" | tail -n 1)\n\
         \x20   if [ -n \"$jw_line\" ]; then jw_why=unreachable\n\
         \x20   else jw_why=timeout; jw_line=$(printf '%s\\n' \"$jw_log\" | grep -v '^$' | tail -n 1); fi\n\
         \x20   break\n\
         \x20 fi\n\
         done\n\
         if [ -z \"$jw_why\" ]; then wait \"$jw_pid\"; exit $?; fi\n\
         systemctl stop \"$jw_unit\" >/dev/null 2>&1 || true\n\
         jw_i=0\n\
         while kill -0 \"$jw_pid\" 2>/dev/null && [ \"$jw_i\" -lt 15 ]; do sleep 1; jw_i=$((jw_i + 1)); done\n\
         pkill -P \"$jw_pid\" 2>/dev/null; kill \"$jw_pid\" 2>/dev/null\n\
         wait \"$jw_pid\" 2>/dev/null\n\
         echo \"edgeops: stopped $jw_unit: it could not start ($jw_why)\" >&2\n\
         echo \"edgeops-join: $jw_why\" >&2\n\
         printf 'edgeops-join-log: %s\\n' \"$(printf '%s' \"$jw_line\" | cut -c1-400)\" >&2\n\
         exit {STOPPED_EXIT}\n",
        limit = limit.as_secs().max(1),
    )
}

/// Time the watch needs after its limit to stop the unit and let the installer end (it waits
/// up to 15 s for it), plus the round trip: the SSH bound stays above the host-side one.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// The SSH bound of one exec that installs (or restarts) k3s on `host`: the host's
/// `command_timeout` for the download and the installer, plus `[cluster] join_timeout` for the
/// service's start (watched on the host), plus [`STOP_GRACE`].
pub fn install_timeout(inventory: &Inventory, host: &Host) -> Duration {
    host.ssh.command_timeout + inventory.cluster.join_timeout + STOP_GRACE
}

/// `script` (which installs or restarts the unit of `spec`) under the host-side watch, up to
/// the inventory's `join_timeout`.
pub fn watched_install(inventory: &Inventory, spec: &InstallSpec, script: &str) -> String {
    watched(script, unit_name(spec), inventory.cluster.join_timeout)
}

/// The explained reason when the watch stopped `host`'s service: `stderr` of a watched script
/// that exited with [`STOPPED_EXIT`]; `None` when it holds no stop.
pub fn stopped_reason(
    inventory: &Inventory,
    host: &Host,
    spec: &InstallSpec,
    stderr: &str,
) -> Option<String> {
    let stopped = parse(stderr)?;
    let first = install::first_server(inventory).ok()?;
    let url = spec.join.url();
    let first_url = install::server_url(&first.address);
    let cx = JoinContext {
        host: &host.name,
        unit: unit_name(spec),
        node_name: &host.node_name,
        server_url: url,
        first_server: &first.name,
        url_is_first_server: url == Some(first_url.as_str()),
        limit: inventory.cluster.join_timeout,
    };
    Some(stopped.explain(&cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_report_is_read_back() {
        let stderr = "Job for k3s-agent.service canceled.\nedgeops: stopped k3s-agent: it could not start (ca)\n\
                      edgeops-join: ca\nedgeops-join-log: level=error msg=\"x: token CA hash does not match\"\n";
        let stopped = parse(stderr).unwrap();
        assert_eq!(stopped.why, JoinRefusal::CaMismatch);
        assert!(stopped.line.unwrap().contains("token CA hash"));
        assert_eq!(parse("plain failure\n"), None);
    }

    #[test]
    fn the_first_server_is_named_when_it_is_the_one_unreachable() {
        let stopped = JoinStopped {
            why: JoinRefusal::Unreachable,
            line: Some("connect: connection refused".into()),
        };
        let cx = JoinContext {
            host: "lab-02",
            unit: "k3s-agent",
            node_name: "lab-02",
            server_url: Some("https://10.0.0.11:6443"),
            first_server: "lab-01",
            url_is_first_server: true,
            limit: Duration::from_secs(30),
        };
        let text = stopped.explain(&cx);
        assert!(text.contains("first server lab-01"), "{text}");
        assert!(text.contains("30s (join_timeout)"), "{text}");
    }

    #[test]
    fn the_watched_script_is_valid_sh() {
        let script = watched("echo hi", "k3s-agent", Duration::from_secs(20));
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(script.contains("jw_limit=20"));
    }
}
