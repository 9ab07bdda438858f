//! Lab id allocation: concurrent tests (and test binaries) each get their own lab id, guarded
//! by a lock file per id under /tmp, so bridges, netns and subnets never collide.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// How long a test waits for a free lab id before failing.
const WAIT_FOR_ID: Duration = Duration::from_secs(900);

/// A lab id held by this process until dropped.
pub struct LabId {
    number: u8,
    marker: PathBuf,
    _lock: File,
}

impl LabId {
    pub fn number(&self) -> u8 {
        self.number
    }

    /// Takes the first free id of the pool (env EDGEOPS_TEST_LAB_IDS, e.g. "1,2,3"; default
    /// 1-9). An id is free when its lock is free and no lab of another owner runs on it.
    pub fn acquire(repo: &Path) -> LabId {
        let pool = id_pool();
        let deadline = Instant::now() + WAIT_FOR_ID;
        loop {
            for &number in &pool {
                if let Some(id) = try_take(repo, number) {
                    return id;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no free lab id among {pool:?} within {WAIT_FOR_ID:?} (labs of other users run there)"
            );
            sleep(Duration::from_millis(500));
        }
    }
}

impl LabId {
    /// Forget the owner marker now, for labs held in statics (never dropped) and torn down at
    /// exit: a marker left behind would let a later run of this checkout tear down whichever
    /// lab (of another checkout) holds the id by then.
    pub fn release_marker(&self) {
        let _ = fs::remove_file(&self.marker);
    }
}

impl Drop for LabId {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.marker);
    }
}

fn id_pool() -> Vec<u8> {
    let spec = std::env::var("EDGEOPS_TEST_LAB_IDS").unwrap_or_else(|_| "1,2,3,4,5,6,7,8,9".into());
    let pool: Vec<u8> = spec
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n <= 9)
        .collect();
    assert!(
        !pool.is_empty(),
        "EDGEOPS_TEST_LAB_IDS={spec:?} names no lab id 0-9"
    );
    pool
}

fn try_take(repo: &Path, number: u8) -> Option<LabId> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("/tmp/edgeops-lab-{number}.lock"))
        .ok()?;
    lock.try_lock().ok()?;
    let state = repo.join("lab/state").join(number.to_string());
    let marker = state.join(".test-owner");
    if bridge_exists(number) {
        // A crashed test of this repo leaves its marker: its lab is ours to clean. Without a
        // marker the lab belongs to someone using this id by hand; leave it alone.
        if !marker.exists() {
            return None;
        }
        let down = Command::new(repo.join("scripts/lab"))
            .arg("down")
            .env("EDGEOPS_LAB_ID", number.to_string())
            .output()
            .ok()?;
        if !down.status.success() || bridge_exists(number) {
            return None;
        }
    }
    fs::create_dir_all(&state).ok()?;
    fs::write(&marker, std::process::id().to_string()).ok()?;
    Some(LabId {
        number,
        marker,
        _lock: lock,
    })
}

fn bridge_exists(number: u8) -> bool {
    Path::new(&format!("/sys/class/net/edl{number}br")).exists()
}
