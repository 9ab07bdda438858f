//! etcd snapshots, without SSH: snapshot names, the backup folder (0700, copies 0600, their
//! manifest: file → sha256) and what a prune keeps and removes there; the host scripts of a
//! backup (`k3s etcd-snapshot save|ls|prune`, the file's copy) and the reading of what they
//! print; the host scripts of a restore (what is installed, stop, k3s's `--cluster-reset` from
//! the snapshot, a peer's etcd data moved aside, an agent restarted, a Node's password forgotten
//! and its Ready wait). The phases in `phases::backup` / `phases::restore` send them through the
//! engine.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::remote::{API_WAIT_SH, NODE_TOKEN_PATH};
use crate::shell::with_vars;

/// The manifest's file name inside a backup folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// k3s's default `--name` of an on-demand snapshot.
pub const DEFAULT_NAME: &str = "on-demand";

/// Why a snapshot or the manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "snapshot name {0:?} is not usable: use letters, digits, '.', '_' and '-' (k3s appends -NODE-TIME to it)"
    )]
    BadName(String),
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path}: not a valid edgeops backup manifest: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error(
        "{file} is not in the manifest {manifest}: edgeops restores only snapshots it fetched and recorded (nothing was changed)"
    )]
    NotInManifest { file: String, manifest: PathBuf },
    #[error(
        "{file}: sha256 is {actual}, but the manifest {manifest} recorded {expected}: the file was changed or damaged since `edgeops backup`; refusing to restore it (nothing was changed)"
    )]
    Mismatch {
        file: String,
        manifest: PathBuf,
        expected: String,
        actual: String,
    },
}

/// Check a user-given snapshot name (`--name`): it becomes part of a file name on the host.
pub fn check_name(name: &str) -> Result<(), SnapshotError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::BadName(name.to_owned()))
    }
}

/// One snapshot copied to the workstation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The file name (k3s's `<name>-<node>-<unix time>`), in the backup folder.
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// The server it was taken on.
    pub host: String,
    /// Unix time of the copy.
    pub fetched: u64,
    /// Where it lies on the server (`k3s etcd-snapshot ls`'s location, without `file://`).
    pub remote_path: String,
}

/// `manifest.json` of a backup folder: the cluster and every snapshot fetched, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub cluster: String,
    pub snapshots: Vec<Entry>,
}

impl Manifest {
    /// Read `dir/manifest.json`; a folder without one has an empty manifest.
    pub fn load(dir: &Path) -> Result<Manifest, SnapshotError> {
        let path = dir.join(MANIFEST_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| SnapshotError::BadManifest {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(io(&path, e)),
        }
    }

    /// Write it atomically, 0600 (it names the snapshot files, which hold the cluster's secrets).
    pub fn save(&self, dir: &Path) -> Result<(), SnapshotError> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).expect("manifest serializes");
        write_private(&path, text.as_bytes())
    }

    pub fn find(&self, file: &str) -> Option<&Entry> {
        self.snapshots.iter().find(|e| e.file == file)
    }

    /// Record `entry` (replacing one of the same file).
    pub fn add(&mut self, entry: Entry) {
        self.snapshots.retain(|e| e.file != entry.file);
        self.snapshots.push(entry);
    }

    /// The entries a prune to `keep` removes: the oldest beyond the newest `keep`.
    pub fn prune(&mut self, keep: usize) -> Vec<Entry> {
        self.snapshots.sort_by_key(|e| (e.fetched, e.file.clone()));
        let excess = self.snapshots.len().saturating_sub(keep);
        self.snapshots.drain(..excess).collect()
    }
}

/// Write the copy of `taken` (its `bytes`, taken on `host`) into the backup folder `dir`
/// (0600; the folder 0700) and record it in the manifest of `cluster`. The entry, and where the
/// copy lies.
pub fn keep_copy(
    dir: &Path,
    cluster: &str,
    host: &str,
    taken: Listed,
    bytes: &[u8],
) -> Result<(Entry, PathBuf), SnapshotError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    restrict_dir(dir)?;
    let local = dir.join(&taken.name);
    write_private(&local, bytes)?;
    let entry = Entry {
        file: taken.name,
        sha256: sha256_hex(bytes),
        size: bytes.len() as u64,
        host: host.to_owned(),
        fetched: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        remote_path: taken.path,
    };
    let mut manifest = Manifest::load(dir)?;
    manifest.cluster = cluster.to_owned();
    manifest.add(entry.clone());
    manifest.save(dir)?;
    Ok((entry, local))
}

/// `e`, met at `path`.
fn io(path: &Path, e: std::io::Error) -> SnapshotError {
    SnapshotError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The backup folder is 0700: it holds snapshots, which hold the cluster's secrets.
fn restrict_dir(dir: &Path) -> Result<(), SnapshotError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io(dir, e))
}

/// Keep the newest `keep` entries of the backup folder `dir`'s manifest; the older files go.
/// The files removed.
pub fn prune_folder(dir: &Path, keep: usize) -> Result<Vec<String>, SnapshotError> {
    let mut manifest = Manifest::load(dir)?;
    let gone = manifest.prune(keep);
    for entry in &gone {
        let path = dir.join(&entry.file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
    }
    manifest.save(dir)?;
    Ok(gone.into_iter().map(|e| e.file).collect())
}

/// Write `bytes` to `path` with mode 0600 from the start (temp file, then rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| io(path, e);
    let tmp = path.with_extension("edgeops-tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Check `file` against the manifest of its folder, before anything is touched: it must be
/// recorded there and hash to what was recorded. Returns its bytes and entry.
pub fn verify(file: &Path) -> Result<(Vec<u8>, Entry), SnapshotError> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let manifest = Manifest::load(dir)?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let entry = manifest
        .find(&name)
        .cloned()
        .ok_or_else(|| SnapshotError::NotInManifest {
            file: file.display().to_string(),
            manifest: manifest_path.clone(),
        })?;
    let bytes = std::fs::read(file).map_err(|e| io(file, e))?;
    let actual = sha256_hex(&bytes);
    if actual != entry.sha256 {
        return Err(SnapshotError::Mismatch {
            file: file.display().to_string(),
            manifest: manifest_path,
            expected: entry.sha256,
            actual,
        });
    }
    Ok((bytes, entry))
}

/// The snapshot names `k3s etcd-snapshot save` reported (`Snapshot NAME saved.`).
pub fn saved_names(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("Snapshot ")? + "Snapshot ".len()..];
            let name = rest
                .split(" saved.")
                .next()
                .filter(|_| rest.contains(" saved."))?;
            Some(name.trim().to_owned()).filter(|n| !n.is_empty() && !n.contains(' '))
        })
        .collect()
}

/// One row of `k3s etcd-snapshot ls` (local snapshots: `Name Location Size Created`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    pub name: String,
    /// The path on the server (`file://` removed).
    pub path: String,
    pub size: u64,
    pub created: String,
}

/// Parse `k3s etcd-snapshot ls`: a header line, then whitespace-separated columns. Log lines
/// (k3s may print `level=...` lines on the same stream) and S3 rows (no `file://`) are skipped.
pub fn parse_list(output: &str) -> Vec<Listed> {
    output
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let [name, location, size, created] = cols[..] else {
                return None;
            };
            let path = location.strip_prefix("file://")?;
            Some(Listed {
                name: name.to_owned(),
                path: path.to_owned(),
                size: size.parse().ok()?,
                created: created.to_owned(),
            })
        })
        .collect()
}

/// What `k3s etcd-snapshot` says on a server that keeps its state in sqlite.
const SQLITE_ANSWER: &str = "etcd datastore disabled";

/// k3s's answer on a sqlite server, and what to do instead.
pub const SQLITE_REFUSAL: &str = "k3s answered `etcd datastore disabled`: this cluster keeps its state in \
     sqlite (a single server without `ha = true`), and k3s can snapshot only embedded etcd. \
     Alternatives: stop k3s and copy /var/lib/rancher/k3s/server/db/state.db* and server/token \
     aside yourself, or rebuild the cluster with `ha = true` (3+ servers)";

/// Whether what `k3s etcd-snapshot` printed (stdout and stderr) is its sqlite refusal.
pub fn is_sqlite_answer(said: &str) -> bool {
    said.contains(SQLITE_ANSWER)
}

/// The server's snapshots, with k3s's own `etcd-snapshot ls` (sudo); [`parse_list`] reads it.
pub const LIST_SCRIPT: &str = include_str!("sh/backup-list.sh");

/// `k3s etcd-snapshot save --name NAME`, then the listing in the same round trip (sudo); what
/// it prints is read by [`read_save`].
pub fn save_script(name: &str) -> String {
    with_vars(&[("name", name)], include_str!("sh/backup-save.sh"))
}

/// What the save script printed: the save's own lines, and the listing after `--- list`.
pub fn read_save(output: &str) -> (&str, &str) {
    output.split_once("--- list\n").unwrap_or((output, ""))
}

/// Print the snapshot file at `path` on the server (as root: it is 0600); anything but a
/// regular file is refused.
pub fn fetch_script(path: &str) -> String {
    with_vars(&[("path", path)], include_str!("sh/backup-fetch.sh"))
}

/// k3s's own prune on the server: the snapshots of prefix `name` beyond the newest `keep` go;
/// [`pruned_names`] reads what it printed.
pub fn prune_script(name: &str, keep: usize) -> String {
    with_vars(
        &[("name", name), ("keep", &keep.to_string())],
        include_str!("sh/backup-prune.sh"),
    )
}

/// The snapshots `k3s etcd-snapshot prune` deleted (`Snapshot NAME deleted.`).
pub fn pruned_names(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("Snapshot ")? + "Snapshot ".len()..];
            rest.split_once(" deleted.").map(|(n, _)| n.to_owned())
        })
        .collect()
}

/// Where a restore uploads the snapshot on the first server (its script removes it after the
/// reset).
const RESTORE_UPLOAD_DIR: &str = "/var/lib/rancher/k3s/server";

/// The path on the first server the snapshot `file` is uploaded to before the reset.
pub fn restore_upload_path(file: &str) -> String {
    format!("{RESTORE_UPLOAD_DIR}/edgeops-restore-{file}")
}

/// A limit in whole seconds, for a script's `timeout`.
fn secs(limit: Duration) -> String {
    limit.as_secs().max(1).to_string()
}

/// What a restore needs to know of a host (sudo); [`Installed::parse`] reads it.
pub const RESTORE_SURVEY_SCRIPT: &str = include_str!("sh/restore-survey.sh");

/// What the restore survey found on a host: is k3s installed, in which unit, is it running.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// k3s on PATH.
    pub k3s: bool,
    /// The k3s unit installed (`k3s` or `k3s-agent`).
    pub unit: Option<String>,
    pub active: bool,
}

impl Installed {
    pub fn parse(text: &str) -> Installed {
        let mut found = Installed::default();
        for line in text.lines() {
            match line.trim().split_once(' ') {
                Some(("k3s", v)) => found.k3s = v == "yes",
                Some(("unit", v)) if v != "none" => found.unit = Some(v.to_owned()),
                Some(("active", v)) => found.active = v == "yes",
                _ => {}
            }
        }
        found
    }
}

/// Stop the k3s server unit before a restore: etcd must not run anywhere during the reset.
pub fn stop_server_script() -> String {
    with_vars(&[("unit", "k3s")], include_str!("sh/restore-stop.sh"))
}

/// Start the k3s server unit again (a restore that could not stop every server).
pub const START_SERVER_SCRIPT: &str = "systemctl start k3s";

/// On the first server, k3s stopped: k3s's `--cluster-reset --cluster-reset-restore-path` from
/// the uploaded `snapshot` (a path there), start k3s, wait for its API; three waits of `limit`
/// each.
pub fn cluster_reset_script(snapshot: &str, limit: Duration) -> String {
    let script = [include_str!("sh/restore-first.sh"), API_WAIT_SH].concat();
    with_vars(
        &[
            ("snapshot", snapshot),
            ("secs", &secs(limit)),
            ("token", NODE_TOKEN_PATH),
        ],
        &script,
    )
}

/// On the first server: wait until Node `node` is Ready, within `limit`.
pub fn wait_node_script(node: &str, limit: Duration) -> String {
    with_vars(
        &[("node", node), ("secs", &secs(limit))],
        include_str!("sh/restore-wait-node.sh"),
    )
}

/// On the first server: forget the snapshot's node password of `node` (see the script).
pub fn forget_password_script(node: &str) -> String {
    with_vars(
        &[("node", node)],
        include_str!("sh/restore-forget-password.sh"),
    )
}

/// On another server, k3s stopped: move its etcd data aside (to the suffix `aside`) and start
/// k3s within `limit`, so it joins the restored cluster as a new member.
pub fn rejoin_script(aside: &str, limit: Duration) -> String {
    with_vars(
        &[("aside", aside), ("secs", &secs(limit))],
        include_str!("sh/restore-peer.sh"),
    )
}

/// On an agent: restart k3s-agent within `limit`, so it reconnects to the restored servers.
pub fn restart_agent_script(limit: Duration) -> String {
    with_vars(
        &[("secs", &secs(limit))],
        include_str!("sh/restore-agent.sh"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_reach_a_host() {
        for ok in ["on-demand", "before-upgrade_1.31", "x"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".hidden", "a b", "a/b", "$(reboot)", "ä"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn save_output_names_the_snapshot() {
        let out = "time=\"2026-12-04T10:05:56Z\" level=info msg=\"Snapshot on-demand-srv1-1796378757 saved.\"\n";
        assert_eq!(saved_names(out), vec!["on-demand-srv1-1796378757"]);
        assert!(
            saved_names(
                "level=fatal msg=\"Error: see server log for details: etcd datastore disabled\""
            )
            .is_empty()
        );
    }

    #[test]
    fn list_output_is_parsed_and_noise_skipped() {
        let out = "Name                      Location                                                          Size Created\n\
                   keep-srv1-1796378757      file:///var/lib/rancher/k3s/server/db/snapshots/keep-srv1-1796378757      6679 2026-12-04T10:05:57Z\n\
                   time=\"x\" level=info msg=\"Reconciling snapshot data\"\n\
                   s3-snap 1234 2026-12-04T10:05:57Z\n";
        let listed = parse_list(out);
        assert_eq!(
            listed,
            vec![Listed {
                name: "keep-srv1-1796378757".into(),
                path: "/var/lib/rancher/k3s/server/db/snapshots/keep-srv1-1796378757".into(),
                size: 6679,
                created: "2026-12-04T10:05:57Z".into(),
            }]
        );
    }

    fn entry(file: &str, fetched: u64) -> Entry {
        Entry {
            file: file.into(),
            sha256: "00".into(),
            size: 1,
            host: "s1".into(),
            fetched,
            remote_path: format!("/x/{file}"),
        }
    }

    #[test]
    fn prune_keeps_the_newest() {
        let mut m = Manifest {
            cluster: "c".into(),
            snapshots: vec![entry("b", 20), entry("a", 10), entry("c", 30)],
        };
        let gone: Vec<String> = m.prune(2).into_iter().map(|e| e.file).collect();
        assert_eq!(gone, vec!["a"]);
        assert_eq!(m.snapshots.len(), 2);
        assert!(m.prune(5).is_empty());
        let gone = m.prune(0);
        assert_eq!(gone.len(), 2);
    }

    #[test]
    fn verify_refuses_unknown_and_changed_files_and_accepts_the_recorded_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("on-demand-s1-1");
        std::fs::write(&file, b"snapshot bytes").unwrap();
        assert!(matches!(
            verify(&file),
            Err(SnapshotError::NotInManifest { .. })
        ));
        let mut m = Manifest {
            cluster: "c".into(),
            snapshots: vec![],
        };
        let mut e = entry("on-demand-s1-1", 1);
        e.sha256 = sha256_hex(b"snapshot bytes");
        m.add(e.clone());
        m.save(dir.path()).unwrap();
        let (bytes, found) = verify(&file).unwrap();
        assert_eq!(bytes, b"snapshot bytes");
        assert_eq!(found, e);
        std::fs::write(&file, b"snapshot bytez").unwrap();
        let err = verify(&file).unwrap_err();
        assert!(matches!(err, SnapshotError::Mismatch { .. }), "{err}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(MANIFEST_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn survey_answers_are_read() {
        assert_eq!(
            Installed::parse("k3s yes\nunit k3s\nactive yes\n"),
            Installed {
                k3s: true,
                unit: Some("k3s".to_owned()),
                active: true
            }
        );
        // A re-flashed board: nothing installed.
        assert_eq!(
            Installed::parse("k3s no\nunit none\nactive no\n"),
            Installed::default()
        );
        assert_eq!(Installed::parse(""), Installed::default());
    }
}
