# shellcheck shell=sh
# Restart an agent so it reconnects to the restored servers (phases/restore). Given: secs.
: "${secs:?}"
if ! timeout "$secs" systemctl restart k3s-agent; then
  systemctl stop k3s-agent || true
  echo "edgeops: k3s-agent did not start within ${secs}s; stopped it. Its last lines:" >&2
  journalctl -u k3s-agent --no-pager -n 40 -o cat | grep "level=" | tail -n 2 >&2 || true
  exit 3
fi
