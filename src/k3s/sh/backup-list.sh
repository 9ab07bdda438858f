# shellcheck shell=sh
# List the server's etcd snapshots with k3s's own command (phases/backup).
if ! command -v k3s >/dev/null 2>&1; then
  echo "edgeops: k3s is not installed on this host" >&2
  exit 4
fi
k3s etcd-snapshot ls 2>&1
