# shellcheck shell=sh
# What a restore needs to know of one host (phases/restore): is k3s installed, which unit,
# is it active. Prints `k3s yes|no`, `unit NAME|none`, `active yes|no`.
if command -v k3s >/dev/null 2>&1; then echo "k3s yes"; else echo "k3s no"; fi
unit=none
for u in k3s k3s-agent; do
  if [ -f "/etc/systemd/system/$u.service" ]; then unit=$u; fi
done
echo "unit $unit"
if [ "$unit" != none ] && systemctl is-active --quiet "$unit"; then echo "active yes"; else echo "active no"; fi
