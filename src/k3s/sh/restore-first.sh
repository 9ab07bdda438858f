# shellcheck shell=sh
# On the first server, k3s stopped: restore the uploaded snapshot with k3s's own cluster reset,
# then start k3s normally; the API wait is appended (phases/restore). The unit's environment
# (K3S_TOKEN_FILE...) is loaded as systemd would; k3s reads config.yaml itself.
# Given: snapshot (path on this host), secs (limit for the reset, the start and the API).
# Exit 5: the reset failed; 3: k3s did not start, or (api-wait.sh) its API did not answer.
: "${snapshot:?}" "${secs:?}"
umask 077
env_file=/etc/systemd/system/k3s.service.env
log=/var/lib/rancher/k3s/server/edgeops-restore.log
mkdir -p /var/lib/rancher/k3s/server
set -a
# shellcheck disable=SC1090
[ -f "$env_file" ] && . "$env_file"
set +a
reset_ok=yes
timeout "$secs" k3s server --cluster-reset --cluster-reset-restore-path="$snapshot" >"$log" 2>&1 || reset_ok=no
# The uploaded copy holds the cluster's secrets: gone once k3s has read it.
rm -f "$snapshot"
if [ "$reset_ok" = no ]; then
  echo "edgeops: k3s --cluster-reset failed; its last lines:" >&2
  tail -n 5 "$log" >&2
  exit 5
fi
tail -n 1 "$log"
if ! timeout "$secs" systemctl start k3s; then
  systemctl stop k3s || true
  echo "edgeops: k3s did not start within ${secs}s after the restore; stopped it. Its last lines:" >&2
  journalctl -u k3s --no-pager -n 40 -o cat | grep "level=" | tail -n 2 >&2 || true
  exit 3
fi
# The API wait follows (k3s/sh/api-wait.sh, appended by k3s/snapshot.rs).
