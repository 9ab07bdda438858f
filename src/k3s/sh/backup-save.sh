# shellcheck shell=sh
# Take an on-demand etcd snapshot on the first server with k3s's own command, then list the
# server's snapshots so edgeops learns where the new one lies (phases/backup).
# Given: name (the --name prefix). Output: the save's log lines, `--- list`, then the listing.
: "${name:?}"
if ! command -v k3s >/dev/null 2>&1; then
  echo "edgeops: k3s is not installed on this host" >&2
  exit 4
fi
k3s etcd-snapshot save --name "$name" 2>&1 || exit $?
echo "--- list"
k3s etcd-snapshot ls 2>&1
