# shellcheck shell=sh
# On another server, k3s stopped: move its etcd data aside (k3s: "Backup and delete
# ${datadir}/server/db on each peer etcd server and rejoin the nodes"), then start k3s so it
# joins the restored cluster as a new member (phases/restore.rs). Given: aside (a suffix), secs.
: "${aside:?}" "${secs:?}"
db=/var/lib/rancher/k3s/server/db
if [ -d "$db" ]; then
  mv "$db" "$db.$aside"
  echo "moved $db to $db.$aside"
fi
timeout "$secs" systemctl start k3s
