# shellcheck shell=sh
# Stop k3s (server or agent) before a restore (phases/restore). Given: unit.
: "${unit:?}"
systemctl stop "$unit"
