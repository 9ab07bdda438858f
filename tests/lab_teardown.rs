//! `scripts/lab down` leaves nothing of a lab behind: no process, mount, netns, link or cgroup.

mod support;

use std::fs;
use std::process::Command;
use support::Lab;

fn ip(args: &[&str]) -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(args)
            .output()
            .expect("run ip")
            .stdout,
    )
    .to_string()
}

/// Live (non-zombie) processes whose command line mentions `needle`. Zombies are left out: on a
/// machine whose PID 1 does not reap orphans they stay listed, but hold nothing.
fn live_processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        if state == Some('Z') || stat.is_empty() {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

#[test]
fn down_leaves_no_process_mount_netns_link_or_cgroup() {
    let lab = Lab::start(3);
    let id = lab.id();
    let state = lab.state_dir().display().to_string();
    lab.delay("lab-02", 10);
    lab.freeze("lab-03");
    assert!(
        !live_processes_mentioning(&state).is_empty(),
        "the running lab has processes"
    );
    assert!(ip(&["netns", "list"]).contains(&format!("edl{id}-lab-01")));

    let out = lab.run_lab(&["down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let prefix = format!("edl{id}");
    assert!(
        !ip(&["netns", "list"])
            .lines()
            .any(|l| l.starts_with(&format!("{prefix}-"))),
        "netns left"
    );
    let links = ip(&["-o", "link", "show"]);
    assert!(
        !links
            .lines()
            .any(|l| l.split(": ").nth(1).is_some_and(|n| n.starts_with(&prefix))),
        "links left: {links}"
    );
    assert_eq!(
        live_processes_mentioning(&state),
        Vec::<String>::new(),
        "processes left"
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&state), "mounts left");
    assert!(
        !mounts.contains(&format!("/run/netns/{prefix}-")),
        "netns mounts left"
    );
    let cgroups = [
        "/sys/fs/cgroup/unified/edgeops-lab",
        "/sys/fs/cgroup/edgeops-lab",
    ];
    for base in cgroups {
        assert!(
            !std::path::Path::new(&format!("{base}/{id}")).exists(),
            "cgroup {base}/{id} left"
        );
    }
}
