//! The bounds of an install or restart that starts a k3s service, and the report when the
//! service could not start: the host-side watch (`k3s::join_watch`) and its explanation.

use std::time::Duration;

use crate::inventory::{Host, Inventory};
use crate::k3s::install::{self, InstallSpec};
use crate::k3s::join_watch::{self, JoinContext};
use crate::ssh::ExecOutput;

use crate::k3s::remote;

/// Time the watch needs after its limit to stop the unit and let the installer end (it waits
/// up to 15 s for it), plus the round trip: the SSH bound stays above the host-side one.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(30);

/// The SSH bound of one exec that installs (or restarts) k3s on `host`: the host's
/// `command_timeout` for the download and the installer, plus `[cluster] join_timeout` for the
/// service's start (watched on the host), plus [`STOP_GRACE`].
pub(crate) fn install_timeout(inventory: &Inventory, host: &Host) -> Duration {
    host.ssh.command_timeout + inventory.cluster.join_timeout + STOP_GRACE
}

/// `script` (which installs or restarts the unit of `spec`) under the host-side watch.
pub(crate) fn watched(inventory: &Inventory, spec: &InstallSpec, script: &str) -> String {
    join_watch::watched(
        script,
        remote::unit_name(spec),
        inventory.cluster.join_timeout,
    )
}

/// The explained reason when the watch stopped the service in `out`; `None` otherwise.
pub(crate) fn stopped_reason(
    inventory: &Inventory,
    host: &Host,
    spec: &InstallSpec,
    out: &ExecOutput,
) -> Option<String> {
    if out.exit != crate::ssh::Exit::Status(join_watch::STOPPED_EXIT) {
        return None;
    }
    let stopped = join_watch::parse(&String::from_utf8_lossy(&out.stderr))?;
    let first = install::first_server(inventory).ok()?;
    let url = spec.join.url();
    let first_url = install::server_url(&first.address);
    let cx = JoinContext {
        host: &host.name,
        unit: remote::unit_name(spec),
        node_name: &host.node_name,
        server_url: url,
        first_server: &first.name,
        url_is_first_server: url == Some(first_url.as_str()),
        limit: inventory.cluster.join_timeout,
    };
    Some(stopped.explain(&cx))
}
