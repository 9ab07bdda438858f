//! The Raspberry Pi memory-controller check: after the cgroup flags and the reboot, the memory
//! controller must really be on (`/sys/fs/cgroup/cgroup.controllers`, or `/proc/cgroups` on a
//! cgroup v1 kernel), or k3s will not start ("failed to find memory cgroup"). Some Raspberry Pi
//! 5 kernels keep it off even with the flags (raspberrypi/linux#5933, #6980; k3s-io/k3s#9524):
//! such a host is reported with the fix and k3s is not installed on it.

/// Prints `memory=yes` or `memory=no`: the same test as the facts script.
pub const MEMORY_CHECK: &str = "if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then echo memory=yes; \
     elif awk '$1==\"memory\" && $4==\"1\" {f=1} END {exit !f}' /proc/cgroups 2>/dev/null; then echo memory=yes; \
     else echo memory=no; fi";

/// The memory controller is on, from [`MEMORY_CHECK`]'s output.
pub fn memory_on(output: &str) -> bool {
    output.lines().any(|line| line.trim() == "memory=yes")
}

/// The per-host report for a Pi booted with the flags whose memory controller is still off.
pub fn still_off_reason(cmdline_file: &str) -> String {
    format!(
        "Raspberry Pi booted with `cgroup_memory=1 cgroup_enable=memory` ({cmdline_file}) but the memory \
         controller is still off (/sys/fs/cgroup/cgroup.controllers has no `memory`), so k3s would not start \
         and is not installed here. Known on some Raspberry Pi 5 kernels: update the kernel and firmware \
         (`sudo apt update && sudo apt full-upgrade`, then reboot), check that /proc/cmdline shows the flags \
         after any `cgroup_disable=memory` the firmware adds, then run `edgeops up` again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_check_and_names_the_file_in_the_fix() {
        assert!(memory_on("memory=yes\n"));
        assert!(!memory_on("memory=no\n"));
        assert!(!memory_on(""));
        let reason = still_off_reason("/boot/firmware/cmdline.txt");
        assert!(reason.contains("/boot/firmware/cmdline.txt"), "{reason}");
        assert!(reason.contains("apt full-upgrade"), "{reason}");
    }
}
