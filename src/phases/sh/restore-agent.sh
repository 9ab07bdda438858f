# shellcheck shell=sh
# Restart an agent so it reconnects to the restored servers (phases/restore.rs). Given: secs.
: "${secs:?}"
timeout "$secs" systemctl restart k3s-agent
