# shellcheck shell=sh
# Remove the server's snapshots of prefix `name` beyond the newest `keep`, with k3s's own
# command (phases/backup). Given: name, keep.
: "${name:?}" "${keep:?}"
k3s etcd-snapshot prune --name "$name" --snapshot-retention "$keep" 2>&1
