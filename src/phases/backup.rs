//! `backup`'s remote half on the first server: take a snapshot with k3s's own `etcd-snapshot
//! save`, copy it to the workstation (0600, sha256 in the backup folder's manifest), list the
//! server's snapshots, prune old ones there. Scripts in `sh/backup-*.sh`; the workstation side
//! (names, manifest, parsing) is `k3s::snapshot`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::k3s::snapshot::{self, Entry, Listed, Manifest};
use crate::shell::with_vars;
use crate::ssh::{ExecOutput, ExecRequest, Session};

/// k3s writes the whole etcd database: on a slow SD card this takes a while.
pub const SAVE_TIMEOUT: Duration = Duration::from_secs(300);
/// Copying the snapshot file back over SSH.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(600);
/// `etcd-snapshot ls` and `prune`.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest snapshot edgeops copies (etcd's default quota is 2 GiB; edge clusters are far
/// smaller). A bigger one fails the backup instead of being cut short.
pub const MAX_SNAPSHOT_BYTES: usize = 2 * 1024 * 1024 * 1024;

/// Why the remote half of a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "{host}: k3s answered `etcd datastore disabled`: this cluster keeps its state in sqlite \
         (a single server without `ha = true`), and k3s can snapshot only embedded etcd. \
         Alternatives: stop k3s and copy /var/lib/rancher/k3s/server/db/state.db* and \
         server/token aside yourself, or rebuild the cluster with `ha = true` (3+ servers)"
    )]
    Sqlite { host: String },
    #[error("{host}: {what} failed ({exit}): {detail}")]
    Remote {
        host: String,
        what: &'static str,
        exit: String,
        detail: String,
    },
    #[error("{host}: {0}", host = .1)]
    Ssh(#[source] crate::ssh::SshError, String),
    #[error(transparent)]
    Local(#[from] snapshot::SnapshotError),
}

/// The outcome of one backup on the workstation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Saved {
    pub entry: Entry,
    /// Where the copy lies on the workstation.
    pub local: String,
}

async fn run(
    session: &Session,
    what: &'static str,
    script: String,
    timeout: Duration,
) -> Result<ExecOutput, BackupError> {
    let out = session
        .exec(&ExecRequest::new(script).sudo(true).timeout(timeout))
        .await
        .map_err(|e| BackupError::Ssh(e, session.name().to_owned()))?;
    if out.success() {
        return Ok(out);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("etcd datastore disabled") {
        return Err(BackupError::Sqlite {
            host: session.name().to_owned(),
        });
    }
    Err(BackupError::Remote {
        host: session.name().to_owned(),
        what,
        exit: out.exit.to_string(),
        detail: super::outcome::last_lines(&text, 3),
    })
}

/// The server's snapshots (`k3s etcd-snapshot ls`).
pub async fn list(session: &Session) -> Result<Vec<Listed>, BackupError> {
    let out = run(
        session,
        "etcd-snapshot ls",
        include_str!("sh/backup-list.sh").to_owned(),
        LIST_TIMEOUT,
    )
    .await?;
    Ok(snapshot::parse_list(&out.stdout_lossy()))
}

/// Take a snapshot named `name-<node>-<time>` on the server, copy it into `dir` (0600) and
/// record it in `dir`'s manifest.
pub async fn save(
    session: &Session,
    cluster: &str,
    name: &str,
    dir: &Path,
) -> Result<Saved, BackupError> {
    let script = with_vars(&[("name", name)], include_str!("sh/backup-save.sh"));
    let out = run(session, "etcd-snapshot save", script, SAVE_TIMEOUT).await?;
    let text = out.stdout_lossy();
    let (saved, listing) = text.split_once("--- list\n").unwrap_or((&text, ""));
    let remote = |why: String| BackupError::Remote {
        host: session.name().to_owned(),
        what: "etcd-snapshot save",
        exit: "0".to_owned(),
        detail: why,
    };
    let file = snapshot::saved_names(saved).pop().ok_or_else(|| {
        remote(format!(
            "no `Snapshot NAME saved.` line in: {}",
            super::outcome::last_lines(saved, 3)
        ))
    })?;
    let listed = snapshot::parse_list(listing)
        .into_iter()
        .find(|l| l.name == file)
        .ok_or_else(|| remote(format!("snapshot {file} is not in `k3s etcd-snapshot ls`")))?;
    let fetch = with_vars(
        &[("path", &listed.path)],
        include_str!("sh/backup-fetch.sh"),
    );
    let request = ExecRequest::new(fetch)
        .sudo(true)
        .timeout(FETCH_TIMEOUT)
        .max_output(MAX_SNAPSHOT_BYTES);
    let out = session
        .exec(&request)
        .await
        .map_err(|e| BackupError::Ssh(e, session.name().to_owned()))?;
    if !out.success() || out.truncated {
        return Err(BackupError::Remote {
            host: session.name().to_owned(),
            what: "copying the snapshot",
            exit: out.exit.to_string(),
            detail: if out.truncated {
                format!("{file} is larger than {MAX_SNAPSHOT_BYTES} bytes")
            } else {
                super::outcome::last_lines(&String::from_utf8_lossy(&out.stderr), 3)
            },
        });
    }
    if out.stdout.len() as u64 != listed.size {
        return Err(remote(format!(
            "copied {} bytes of {file}, but k3s lists it with {} bytes",
            out.stdout.len(),
            listed.size
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| snapshot::SnapshotError::Io {
        path: dir.to_owned(),
        reason: e.to_string(),
    })?;
    restrict_dir(dir)?;
    let local = dir.join(&file);
    snapshot::write_private(&local, &out.stdout)?;
    let entry = Entry {
        file: file.clone(),
        sha256: snapshot::sha256_hex(&out.stdout),
        size: out.stdout.len() as u64,
        host: session.name().to_owned(),
        fetched: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        remote_path: listed.path,
    };
    let mut manifest = Manifest::load(dir)?;
    manifest.cluster = cluster.to_owned();
    manifest.add(entry.clone());
    manifest.save(dir)?;
    Ok(Saved {
        entry,
        local: local.display().to_string(),
    })
}

/// The backup folder is 0700: it holds snapshots, which hold the cluster's secrets.
fn restrict_dir(dir: &Path) -> Result<(), snapshot::SnapshotError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        snapshot::SnapshotError::Io {
            path: dir.to_owned(),
            reason: e.to_string(),
        }
    })
}

/// Keep the newest `keep` snapshots of prefix `name` on the server (k3s's own prune) and the
/// newest `keep` in `dir` (files and manifest). Returns the local files removed and k3s's
/// output lines naming the removed remote ones.
pub async fn prune(
    session: &Session,
    name: &str,
    keep: usize,
    dir: &Path,
) -> Result<(Vec<String>, Vec<String>), BackupError> {
    let mut manifest = Manifest::load(dir)?;
    let gone = manifest.prune(keep);
    for entry in &gone {
        let path = dir.join(&entry.file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(snapshot::SnapshotError::Io {
                    path,
                    reason: e.to_string(),
                }
                .into());
            }
        }
    }
    manifest.save(dir)?;
    let script = with_vars(
        &[("name", name), ("keep", &keep.to_string())],
        include_str!("sh/backup-prune.sh"),
    );
    let out = run(session, "etcd-snapshot prune", script, LIST_TIMEOUT).await?;
    let remote: Vec<String> = out
        .stdout_lossy()
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("Snapshot ")? + "Snapshot ".len()..];
            rest.split_once(" deleted.").map(|(n, _)| n.to_owned())
        })
        .collect();
    Ok((gone.into_iter().map(|e| e.file).collect(), remote))
}
