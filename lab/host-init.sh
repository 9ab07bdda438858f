#!/bin/bash
# PID 1 of a lab host, run by host-supervisor.sh inside fresh mount/UTS/IPC/PID/cgroup namespaces
# (and the host's netns). Builds the host's filesystem view, then execs systemd or sshd chrooted.
# Args: NAME HOSTDIR LOWER MODE(systemd|sshd)
set -euo pipefail
NAME="$1" H="$2" LOWER="$3" MODE="$4"
M="$H/merged"

# Nothing below may leak into the root mount namespace.
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$H/upper,workdir=$H/work" "$M"
hostname "$NAME"
ip link set lo up
ip addr replace "$(cat "$H/address")/16" dev eth0
ip link set eth0 up

mount -t proc -o nosuid,nodev,noexec proc "$M/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"
# A Pi-like host gets a device tree model under /sys/firmware (the kernel's /proc/device-tree
# symlink cannot be added to procfs; see docs/LAB.md).
if [[ -f "$M/etc/lab/model" ]]; then
  mount -t tmpfs -o mode=0755,size=64k tmpfs "$M/sys/firmware"
  mkdir -p "$M/sys/firmware/devicetree/base"
  cp "$M/etc/lab/model" "$M/sys/firmware/devicetree/base/model"
  [[ -f "$M/etc/lab/compatible" ]] && cp "$M/etc/lab/compatible" "$M/sys/firmware/devicetree/base/compatible"
  mount -o remount,ro,bind "$M/sys/firmware"
fi
# ... and a Pi's /proc/cpuinfo (Revision, Serial, Model), read-only like the kernel's.
if [[ -f "$M/etc/lab/cpuinfo" ]]; then
  mount --bind "$M/etc/lab/cpuinfo" "$M/proc/cpuinfo"
  mount -o remount,ro,bind "$M/proc/cpuinfo"
fi
if [[ "$MODE" == systemd ]]; then
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$M/sys/fs/cgroup"
  mount -t tmpfs -o mode=1777,nosuid,nodev,size=256m tmpfs "$M/tmp"
fi
# A Pi-like host boots with its cmdline.txt as the kernel command line (as the firmware passes
# it), and, like Raspberry Pi OS kernels, has the memory controller only when that line asks for
# it (`cgroup_enable=memory`) and the `pi-memory HOST off` knob (a kernel that ignores the flags,
# as reported for some Pi 5 kernels) is not set. Shown through bind-mounted copies of
# /proc/cmdline, /proc/cgroups and the root cgroup.controllers (see docs/LAB.md).
if [[ -f "$M/etc/lab/model" && -f "$M/boot/firmware/cmdline.txt" ]]; then
  mkdir -p "$H/boot-view"
  head -n 1 "$M/boot/firmware/cmdline.txt" >"$H/boot-view/cmdline"
  mount --bind "$H/boot-view/cmdline" "$M/proc/cmdline"
  if ! grep -qw cgroup_enable=memory "$H/boot-view/cmdline" || [[ -f "$H/pi_memory_off" ]]; then
    awk '$1=="memory" {$4=0} {print}' OFS='\t' /proc/cgroups >"$H/boot-view/cgroups"
    mount --bind "$H/boot-view/cgroups" "$M/proc/cgroups"
    if [[ "$MODE" == systemd ]]; then
      tr ' ' '\n' <"$M/sys/fs/cgroup/cgroup.controllers" | { grep -vx memory || true; } | paste -sd ' ' >"$H/boot-view/controllers"
      mount --bind "$H/boot-view/controllers" "$M/sys/fs/cgroup/cgroup.controllers"
    fi
  fi
fi

# A small /dev with the usual nodes and a private devpts.
mount -t tmpfs -o mode=0755,nosuid,size=1m tmpfs "$M/dev"
for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read -r n ma mi <<<"$node"
  mknod -m 0666 "$M/dev/$n" c "$ma" "$mi"
done
# systemd's console output goes to a per-boot file next to the host's disk.
: >"$H/systemd-console.log"
touch "$M/dev/console" && mount --bind "$H/systemd-console.log" "$M/dev/console"
mkdir -p "$M/dev/pts" "$M/dev/shm" "$M/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$M/dev/pts"
ln -s pts/ptmx "$M/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=64m tmpfs "$M/dev/shm"
ln -s /proc/self/fd "$M/dev/fd"
ln -s /proc/self/fd/0 "$M/dev/stdin"
ln -s /proc/self/fd/1 "$M/dev/stdout"
ln -s /proc/self/fd/2 "$M/dev/stderr"

# /run: the host's boot id lives here and is also shown at the kernel's boot_id path, so a
# client detects a lab reboot exactly like a real one.
mount -t tmpfs -o mode=0755,nosuid,nodev,size=64m tmpfs "$M/run"
mkdir -p "$M/run/sshd" "$M/run/lab" "$M/run/lock"
cp "$H/boot_id" "$M/run/lab/boot_id"
mount --bind "$M/run/lab/boot_id" "$M/proc/sys/kernel/random/boot_id"
mount -o remount,ro,bind "$M/proc/sys/kernel/random/boot_id"

cd /
export container=lab PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [[ "$MODE" == systemd ]]; then
  exec chroot "$M" /sbin/init
else
  exec chroot "$M" /usr/sbin/sshd -D -e
fi
