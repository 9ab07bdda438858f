//! This workstation as the cluster lock sees it: its hostname (as lock owner texts name it) and
//! the pids that run edgeops here now, so a lock left by a run that is gone can be told apart.

/// What the lock script needs to know of this workstation to tell a holder that is gone: its
/// hostname (as owner texts name it) and the pids that run edgeops here now.
#[derive(Debug, Clone)]
pub struct Workstation {
    pub hostname: String,
    pub edgeops_pids: Vec<u32>,
}

impl Workstation {
    pub fn current() -> Workstation {
        Workstation {
            hostname: local_hostname(),
            edgeops_pids: edgeops_pids(),
        }
    }
}

/// Processes named `edgeops` on this machine (this one included). A holder pid not among them
/// runs no edgeops: it exited, or the pid now belongs to another program.
fn edgeops_pids() -> Vec<u32> {
    let mut pids = vec![std::process::id()];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == "edgeops" && !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    pids
}

pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}
