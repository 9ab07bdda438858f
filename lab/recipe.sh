# shellcheck shell=bash disable=SC2034
# The rootfs recipe: sourced by scripts/lab. Changing anything here changes the cache key
# (the whole file is hashed), so the next `scripts/lab build` rebuilds the base tarball.
LAB_SUITE=bookworm
LAB_VARIANT=minbase
LAB_PACKAGES=(
  openssh-server sudo python3-minimal python3 curl ca-certificates openssl
  iproute2 iputils-ping procps systemd systemd-sysv dbus netcat-openbsd less
)
