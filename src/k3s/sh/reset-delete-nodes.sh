# shellcheck shell=sh
# Delete the Node objects of hosts that left a cluster which stays, on the first server with
# sudo (k3s/uninstall.rs, delete_nodes_script). Arguments: the node names.
for n in "$@"; do
  if ! k3s kubectl get node "$n" >/dev/null 2>&1; then echo "absent=$n"
  elif k3s kubectl delete node "$n" >&2; then echo "deleted=$n"
  else echo "failed=$n"; fi
done
