# shellcheck shell=sh
# On another server, k3s stopped: move its etcd data aside (k3s: "Backup and delete
# ${datadir}/server/db on each peer etcd server and rejoin the nodes"), then start k3s so it
# joins the restored cluster as a new member (phases/restore). Given: aside (a suffix), secs.
: "${aside:?}" "${secs:?}"
db=/var/lib/rancher/k3s/server/db
if [ -d "$db" ]; then
  mv "$db" "$db.$aside"
  echo "moved $db to $db.$aside"
fi
if ! timeout "$secs" systemctl start k3s; then
  # Stop what edgeops started: a k3s that cannot join keeps retrying forever otherwise.
  systemctl stop k3s || true
  echo "edgeops: k3s did not start within ${secs}s; stopped it. Its last lines:" >&2
  journalctl -u k3s --no-pager -n 40 -o cat | grep "level=" | tail -n 2 >&2 || true
  exit 3
fi
