# shellcheck shell=sh
# Stop k3s (server or agent) before a restore (phases/restore.rs). Given: unit.
: "${unit:?}"
systemctl stop "$unit"
