# shellcheck shell=sh
# On the first server: wait for one Node to be Ready (phases/restore). Given: node, secs.
: "${node:?}" "${secs:?}"
k3s kubectl wait --for=condition=Ready "node/$node" --timeout="${secs}s"
