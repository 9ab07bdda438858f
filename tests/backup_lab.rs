//! `edgeops backup` and `edgeops restore` against the lab (namespaced Debian hosts with systemd
//! and sshd, see scripts/lab) and the k3s simulator, whose `etcd-snapshot` and
//! `--cluster-reset-restore-path` follow k3s (docs/K3S-SIM.md). Needs root and `scripts/lab`.
//!
//! One HA cluster (three servers with embedded etcd, one agent): objects made, a snapshot taken
//! and checked on disk, the cluster changed, a tampered snapshot refused with nothing changed,
//! the real one restored, and the objects of the snapshot back (and the later ones gone). The
//! cluster's state is read on the hosts with k3s's kubectl, never only from edgeops's output.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

mod support;

use support::Edgeops;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An inventory: the first `servers` hosts are servers (HA when more than one), then agents.
fn inventory(lab: &support::Lab, dir: &Path, name: &str, hosts: &[&str], servers: usize) -> String {
    let mirror = format!("http://{}:8080", lab.bridge_address());
    let user = lab.hosts()[0].user.clone();
    let mut toml = format!(
        "[cluster]\nname = \"{name}\"\nchannel = \"stable\"\nha = {ha}\n\
         token_env = \"BACKUP_LAB_TOKEN\"\n\
         install_url = \"{mirror}/install.sh\"\n\
         channel_url = \"{mirror}/v1-release/channels\"\n\
         download_url = \"{mirror}/k3s-io/k3s/releases\"\n\n\
         [ssh]\nuser = \"{user}\"\nidentity_files = [\"{key}\"]\nknown_hosts = \"{kh}\"\n\
         host_key_policy = \"strict\"\nsudo = \"passwordless\"\n",
        ha = servers > 1,
        key = lab.key_path().display(),
        kh = lab.known_hosts_path().display(),
    );
    for (i, host) in hosts.iter().enumerate() {
        let role = if i < servers { "server" } else { "agent" };
        toml.push_str(&format!(
            "\n[[hosts]]\nname = \"{host}\"\naddress = \"{}\"\nrole = \"{role}\"\n",
            lab.host(host).address
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn kubectl(lab: &support::Lab, args: &str) -> Output {
    lab.ssh("lab-01", &format!("sudo k3s kubectl {args}"))
}

fn namespaces(lab: &support::Lab) -> Vec<String> {
    let out = kubectl(lab, "get ns -o jsonpath={.items[*].metadata.name}");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn cordoned(lab: &support::Lab, node: &str) -> bool {
    let out = kubectl(lab, &format!("get node {node} -o json"));
    assert!(out.status.success(), "{}", text(&out));
    let node: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    node["spec"]["unschedulable"] == serde_json::Value::Bool(true)
}

/// A Namespace made the k3s way (an auto-deploy manifest on the first server).
fn make_namespace(lab: &support::Lab, name: &str) {
    lab.ssh_ok(
        "lab-01",
        &format!(
            "printf 'apiVersion: v1\\nkind: Namespace\\nmetadata:\\n  name: {name}\\n' | \
             sudo tee /var/lib/rancher/k3s/server/manifests/{name}.yaml >/dev/null"
        ),
    );
    until(
        &format!("namespace {name}"),
        Duration::from_secs(30),
        || namespaces(lab).contains(&name.to_owned()),
    );
}

fn main_pid(lab: &support::Lab, host: &str, unit: &str) -> String {
    lab.ssh_ok(host, &format!("systemctl show -p MainPID --value {unit}"))
}

#[test]
fn backup_then_restore_brings_the_snapshot_objects_back() {
    let lab = support::Lab::options(5).start();
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["lab-01", "lab-02", "lab-03", "lab-04"];
    let inv = inventory(&lab, dir.path(), "keep", &hosts, 3);
    // A pinned token: a rebuilt cluster must use the token the snapshot was taken with.
    let edgeops = Edgeops::new().with_env("BACKUP_LAB_TOKEN", "backup-lab-secret-7f3a");
    let up = edgeops.run(&["up", &inv, "--ready-timeout", "90s"]);
    assert!(up.status.success(), "up failed:\n{}", text(&up));

    // A single-server (sqlite) cluster is refused offline, with the reason and the alternative.
    let sqlite_inv = inventory(&lab, dir.path(), "lite", &["lab-05"], 1);
    let refused = edgeops.run(&["backup", &sqlite_inv]);
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{out}");
    assert!(out.contains("sqlite") && out.contains("state.db"), "{out}");

    // Objects the snapshot must hold: a namespace and a cordoned node.
    make_namespace(&lab, "before-backup");
    let out = kubectl(&lab, "cordon lab-04");
    assert!(out.status.success(), "{}", text(&out));
    assert!(cordoned(&lab, "lab-04"));

    let dest = dir.path().join("snaps");
    let dest_s = dest.display().to_string();
    let backup = edgeops.run(&["backup", &inv, "--dest", &dest_s, "-o", "json"]);
    assert!(backup.status.success(), "backup failed:\n{}", text(&backup));
    let report: serde_json::Value = serde_json::from_slice(&backup.stdout).unwrap();
    let file = report["saved"]["entry"]["file"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(file.starts_with("on-demand-lab-01-"), "{file}");
    let local = dest.join(&file);
    use std::os::unix::fs::PermissionsExt;
    let bytes = std::fs::read(&local).unwrap();
    assert_eq!(
        std::fs::metadata(&local).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // The same bytes as the server's file, and the manifest's sha256 is theirs.
    let remote_sha = lab.ssh_ok(
        "lab-01",
        &format!("sudo sha256sum /var/lib/rancher/k3s/server/db/snapshots/{file}"),
    );
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    assert!(remote_sha.starts_with(&sha), "{remote_sha} vs {sha}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dest.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["cluster"], "keep");
    assert_eq!(manifest["snapshots"][0]["sha256"], sha.as_str());
    // The token never reaches the output.
    let token = lab.ssh_ok("lab-01", "sudo cat /var/lib/rancher/k3s/server/token");
    let secret = token.rsplit(':').next().unwrap();
    assert!(!text(&backup).contains(secret));

    let list = edgeops.run(&["backup", &inv, "--dest", &dest_s, "--list"]);
    let out = text(&list);
    assert!(list.status.success(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&file) && l.contains(" ok ")),
        "{out}"
    );
    assert!(
        out.contains(&format!("/var/lib/rancher/k3s/server/db/snapshots/{file}")),
        "{out}"
    );

    // Change the cluster after the snapshot: a new namespace (its manifest then removed, so
    // only the datastore holds it), the node uncordoned.
    make_namespace(&lab, "after-backup");
    lab.ssh_ok(
        "lab-01",
        "sudo rm /var/lib/rancher/k3s/server/manifests/after-backup.yaml",
    );
    let out = kubectl(&lab, "uncordon lab-04");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!cordoned(&lab, "lab-04"));

    // A tampered snapshot is refused before any host is touched.
    let pids: Vec<String> = ["lab-01", "lab-02", "lab-03"]
        .iter()
        .map(|h| main_pid(&lab, h, "k3s"))
        .collect();
    let mut bad = bytes.clone();
    let last = bad.len() / 2;
    bad[last] ^= 1;
    std::fs::write(&local, &bad).unwrap();
    let refused = edgeops.run(&["restore", &inv, local.to_str().unwrap(), "--yes"]);
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{out}");
    assert!(
        out.contains("sha256") && out.contains("nothing was changed"),
        "{out}"
    );
    let after: Vec<String> = ["lab-01", "lab-02", "lab-03"]
        .iter()
        .map(|h| main_pid(&lab, h, "k3s"))
        .collect();
    assert_eq!(pids, after, "a refused restore restarted k3s");
    std::fs::write(&local, &bytes).unwrap();

    // --dry-run: the plan (every host, what it will do), nothing changed.
    let dry = edgeops.run(&["restore", &inv, local.to_str().unwrap(), "--dry-run"]);
    let out = text(&dry);
    assert!(dry.status.success(), "{out}");
    assert!(
        out.contains("restore plan") && out.contains("dry run: nothing was changed"),
        "{out}"
    );
    for host in hosts {
        assert!(
            out.lines().any(|l| l.starts_with(host)),
            "{host} not in the plan:\n{out}"
        );
    }
    let after: Vec<String> = ["lab-01", "lab-02", "lab-03"]
        .iter()
        .map(|h| main_pid(&lab, h, "k3s"))
        .collect();
    assert_eq!(pids, after, "a dry run restarted k3s");
    assert!(namespaces(&lab).contains(&"after-backup".to_owned()));
    assert!(!cordoned(&lab, "lab-04"));

    // Without --yes and without a terminal: refused, nothing changed.
    let refused = edgeops.run(&["restore", &inv, local.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));

    let restore = edgeops.run(&[
        "restore",
        &inv,
        local.to_str().unwrap(),
        "--yes",
        "--ready-timeout",
        "90s",
        "--api-timeout",
        "90s",
    ]);
    let out = text(&restore);
    assert!(restore.status.success(), "restore failed:\n{out}");
    for host in hosts {
        assert!(
            out.lines()
                .any(|l| l.starts_with(host) && l.contains("restored")),
            "{host} not reported restored:\n{out}"
        );
    }
    assert!(!out.contains(secret));
    // The snapshot's objects are back, the later one is gone, every node is Ready.
    let ns = namespaces(&lab);
    assert!(ns.contains(&"before-backup".to_owned()), "{ns:?}");
    assert!(!ns.contains(&"after-backup".to_owned()), "{ns:?}");
    assert!(
        cordoned(&lab, "lab-04"),
        "the cordon of the snapshot is not back"
    );
    let nodes = kubectl(&lab, "get nodes -o json");
    let nodes: serde_json::Value = serde_json::from_slice(&nodes.stdout).unwrap();
    for node in nodes["items"].as_array().unwrap() {
        let ready = node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(
            ready,
            "{} not Ready after the restore",
            node["metadata"]["name"]
        );
    }
    // The peers' old etcd data was moved aside, as k3s asks, not deleted.
    for host in ["lab-02", "lab-03"] {
        let aside = lab.ssh_ok(
            host,
            "sudo sh -c 'ls -d /var/lib/rancher/k3s/server/db.edgeops-before-restore-*'",
        );
        assert!(!aside.is_empty(), "{host}: no db moved aside");
    }
    // The uploaded copy on the first server is gone.
    let left = lab.ssh_ok(
        "lab-01",
        "sudo sh -c 'ls /var/lib/rancher/k3s/server/ | grep edgeops-restore- || true'",
    );
    assert!(!left.contains(&file), "{left}");

    // Why the peers' db must go: after another cluster reset of the first server, a server
    // that still holds the old etcd data never comes up (k3s keeps failing its datastore test)
    // until that data is removed.
    lab.ssh_ok(
        "lab-01",
        "sudo sh -c 'systemctl stop k3s && set -a && . /etc/systemd/system/k3s.service.env && \
         k3s server --cluster-reset >/dev/null 2>&1 && systemctl start k3s'",
    );
    let stuck = lab.ssh("lab-02", "sudo timeout 15 systemctl restart k3s");
    assert!(
        !stuck.status.success(),
        "a peer with the old etcd data came up"
    );
    let journal = lab.ssh_ok("lab-02", "sudo journalctl -u k3s --no-pager -n 20");
    assert!(
        journal.contains("this server is a not a member of the etcd cluster"),
        "{journal}"
    );
    lab.ssh_ok(
        "lab-02",
        "sudo sh -c 'systemctl stop k3s; rm -rf /var/lib/rancher/k3s/server/db && timeout 60 systemctl start k3s'",
    );

    // The cluster wiped (as re-flashed boards would be): restore refuses with what to do...
    let ca = |lab: &support::Lab| {
        lab.ssh_ok(
            "lab-01",
            "sudo cat /var/lib/rancher/k3s/server/tls/server-ca.crt",
        )
    };
    let snapshot_ca = ca(&lab);
    let reset = edgeops.run(&["reset", &inv, "--yes"]);
    assert!(reset.status.success(), "reset failed:\n{}", text(&reset));
    let refused = edgeops.run(&["restore", &inv, local.to_str().unwrap(), "--yes"]);
    let out = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{out}");
    assert!(
        out.contains("edgeops up") && out.contains("nothing was changed"),
        "{out}"
    );
    // ... `up` builds a new, empty cluster, and the restore brings the snapshot's objects back.
    let up = edgeops.run(&["up", &inv, "--ready-timeout", "90s"]);
    assert!(up.status.success(), "up after reset failed:\n{}", text(&up));
    assert!(!namespaces(&lab).contains(&"before-backup".to_owned()));
    assert!(!cordoned(&lab, "lab-04"));
    assert_ne!(ca(&lab), snapshot_ca, "the rebuilt cluster kept the old CA");
    let restore = edgeops.run(&[
        "restore",
        &inv,
        local.to_str().unwrap(),
        "--yes",
        "--ready-timeout",
        "90s",
        "--api-timeout",
        "90s",
    ]);
    assert!(
        restore.status.success(),
        "restore on the rebuilt cluster failed:\n{}",
        text(&restore)
    );
    assert!(namespaces(&lab).contains(&"before-backup".to_owned()));
    assert!(
        cordoned(&lab, "lab-04"),
        "the cordon of the snapshot is not back"
    );
    // The snapshot's bootstrap data (sealed with the same token) gives the cluster CA back, so
    // kubeconfigs and tokens made before the wipe trust the restored cluster again.
    assert_eq!(ca(&lab), snapshot_ca, "the snapshot's CA is not back");

    // Prune: two more snapshots, keep one, here and on the server.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1100)); // k3s names snapshots by the second
        let b = edgeops.run(&["backup", &inv, "--dest", &dest_s, "--prune", "1"]);
        assert!(b.status.success(), "{}", text(&b));
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dest.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["snapshots"].as_array().unwrap().len(),
        1,
        "{manifest}"
    );
    assert!(!local.exists(), "the pruned copy is still here");
    let on_server = lab.ssh_ok("lab-01", "sudo ls /var/lib/rancher/k3s/server/db/snapshots");
    assert_eq!(on_server.lines().count(), 1, "{on_server}");
}
