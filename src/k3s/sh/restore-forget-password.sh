# shellcheck shell=sh
# On the first server, after the restore: remove the node-password Secret the snapshot holds for
# `node`, so the host registers with the password it has now (a re-flashed board has a new
# /etc/rancher/node/password; k3s would refuse it with "Node password rejected"). k3s
# recreates the Secret when the node registers (phases/restore). Given: node.
: "${node:?}"
k3s kubectl delete secret -n kube-system "$node.node-password.k3s" --ignore-not-found
