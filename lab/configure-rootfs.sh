#!/usr/bin/env bash
# Turns the extracted debootstrap tree ($1) into the shared, read-only lower dir of every lab host.
# Everything per host (keys, hostname, machine-id, boot id) is seeded into the host's upper dir by
# scripts/lab instead; this script only holds what all hosts share. Hashed into the cache key.
set -euo pipefail
R="$1"
LAB_USER="${2:-pi}"

# The login user: like Raspberry Pi OS, a non-root user with passwordless sudo; root login is off.
chroot "$R" useradd --create-home --shell /bin/bash --groups sudo "$LAB_USER"
chroot "$R" passwd --lock "$LAB_USER" >/dev/null
chroot "$R" passwd --lock root >/dev/null
install -d -m 0750 "$R/etc/sudoers.d"
echo "$LAB_USER ALL=(ALL) NOPASSWD: ALL" >"$R/etc/sudoers.d/010_lab-nopasswd"
chmod 0440 "$R/etc/sudoers.d/010_lab-nopasswd"
install -d -m 0700 -o 1000 -g 1000 "$R/home/$LAB_USER/.ssh"

# sshd: only the per-host ed25519 key (seeded per host), no root, no passwords, and room for
# hundreds of parallel connections from one client.
rm -f "$R"/etc/ssh/ssh_host_*
cat >"$R/etc/ssh/sshd_config.d/lab.conf" <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UseDNS no
MaxStartups 1000:30:2000
MaxSessions 100
PrintMotd no
CONF
# No motd/last-log noise and a light shell for non-interactive sessions.
: >"$R/etc/motd"

# Empty resolv.conf + hosts: without them sudo stalls ~20 s on DNS (each host gets its own copy).
: >"$R/etc/resolv.conf"
: >"$R/etc/machine-id"

# systemd inside a container: volatile journal, and no units that need real hardware/consoles.
install -d "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=8M\n' >"$R/etc/systemd/journald.conf.d/lab.conf"
for unit in getty@tty1.service serial-getty@ttyS0.service console-getty.service \
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
  systemd-udev-trigger.service systemd-udev-settle.service \
  systemd-remount-fs.service systemd-firstboot.service systemd-hwdb-update.service \
  systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
  sys-kernel-tracing.mount sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount \
  systemd-sysctl.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  systemd-random-seed.service systemd-pstore.service systemd-networkd-wait-online.service \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
  systemd-tmpfiles-clean.timer man-db.timer dpkg-db-backup.timer; do
  ln -sf /dev/null "$R/etc/systemd/system/$unit"
done
chroot "$R" systemctl enable ssh.service >/dev/null 2>&1 || true
chroot "$R" systemctl set-default multi-user.target >/dev/null 2>&1 || true

# The reported architecture: /etc/lab/arch (per host) drives `uname -m`/`arch`. The kernel, the
# binary format and /proc/cpuinfo stay x86_64 (see docs/LAB.md).
cat >"$R/usr/local/bin/uname" <<'SH'
#!/bin/sh
# Lab wrapper: reports the host's simulated machine from /etc/lab/arch (see docs/LAB.md).
arch=$(cat /etc/lab/arch 2>/dev/null || true)
[ -n "$arch" ] || exec /bin/uname "$@"
out=$(/bin/uname "$@") || exit $?
real=$(/bin/uname -m)
printf '%s\n' "$out" | sed "s/$real/$arch/g"
SH
chmod 0755 "$R/usr/local/bin/uname"
printf '#!/bin/sh\nexec /usr/local/bin/uname -m\n' >"$R/usr/local/bin/arch"
chmod 0755 "$R/usr/local/bin/arch"

# Leave apt's caches out of the shared lower dir.
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* 2>/dev/null || true

# lab-ready: the last unit of boot; its file tells `scripts/lab up` that systemd finished booting.
cat >"$R/etc/systemd/system/lab-ready.service" <<'UNIT'
[Unit]
Description=Lab: mark the boot as complete for scripts/lab
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/touch /run/lab/ready

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/lab-ready.service "$R/etc/systemd/system/multi-user.target.wants/lab-ready.service"
