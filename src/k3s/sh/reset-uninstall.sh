# shellcheck shell=sh
# The reset uninstall, with sudo (k3s/uninstall.rs, uninstall_script), after reset-common.sh.
# Given: run (the run id), share_dir (edgeops's upload folder).
: "${run:?}" "${share_dir:?}" "${dirs?}"
set -u
note() { logger -t edgeops -- "$*" 2>/dev/null || true; }
removed() { echo "removed=$1"; }
note "reset run $run: removing k3s"
for name in k3s-agent-uninstall.sh k3s-uninstall.sh; do
  for d in $dirs; do
    s=$d/$name
    [ -f "$s" ] || continue
    echo "edgeops: running $s" >&2
    if sh "$s" </dev/null >&2; then echo "used=$s"; else echo "script_failed=$s $?"; fi
  done
done
if [ -n "$(k3s_pids)" ] || [ -e /etc/systemd/system/k3s.service ] || [ -e /etc/systemd/system/k3s-agent.service ]; then
  for d in $dirs; do
    [ -f "$d/k3s-killall.sh" ] || continue
    echo "fallback=ran $d/k3s-killall.sh"
    sh "$d/k3s-killall.sh" </dev/null >&2 || true
    break
  done
fi
reload=0
for u in k3s-agent k3s; do
  f=/etc/systemd/system/$u.service
  if [ -e "$f" ]; then
    echo "fallback=stop and disable $u"
    systemctl stop "$u" >&2 2>&1 || true
    systemctl disable "$u" >&2 2>&1 || true
  fi
  for p in "$f" "$f.env" "$f.d"; do
    if [ -e "$p" ]; then rm -rf "$p" && removed "$p"; reload=1; fi
  done
done
if [ "$reload" = 1 ]; then
  systemctl daemon-reload >&2 2>&1 || true
  systemctl reset-failed k3s k3s-agent >/dev/null 2>&1 || true
fi
pids=$(k3s_pids | tr '\n' ' ')
if [ -n "${pids% }" ]; then
  echo "fallback=stop k3s processes $pids"
  # shellcheck disable=SC2086 # a list of pids, split on purpose
  kill $pids 2>/dev/null || true
  i=0
  while [ $i -lt 20 ] && [ -n "$(k3s_pids)" ]; do sleep 0.25; i=$((i + 1)); done
  pids=$(k3s_pids | tr '\n' ' ')
  # shellcheck disable=SC2086 # a list of pids, split on purpose
  [ -z "${pids% }" ] || kill -9 $pids 2>/dev/null || true
fi
awk '{print $2}' /proc/self/mounts | grep -E '^(/run/k3s|/var/lib/rancher/k3s|/var/lib/kubelet|/run/netns/cni-)' | sort -r |
while read -r m; do
  echo "fallback=unmount $m"
  umount -f "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
done
if command -v ip >/dev/null 2>&1; then
  for i in cni0 flannel.1 flannel-v6.1 flannel-wg flannel-wg-v6 kube-ipvs0; do
    ip link show "$i" >/dev/null 2>&1 && ip link delete "$i" && removed "interface $i"
  done
fi
for d in $dirs; do
  for f in k3s k3s-killall.sh k3s-uninstall.sh k3s-agent-uninstall.sh; do
    [ -e "$d/$f" ] && rm -f "$d/$f" && removed "$d/$f"
  done
  for f in kubectl crictl ctr; do
    k3s_link "$d/$f" && rm -f "$d/$f" && removed "$d/$f"
  done
done
for p in /etc/rancher/k3s /etc/rancher/node /var/lib/rancher/k3s /var/lib/kubelet /run/k3s /run/flannel "$share_dir"; do
  [ -e "$p" ] && rm -rf "$p" && removed "$p"
done
for p in /etc/rancher /var/lib/rancher; do
  [ -d "$p" ] && rmdir "$p" 2>/dev/null && removed "$p"
done
left=$(traces)
if [ -n "$left" ]; then
  printf '%s\n' "$left" | sed 's/^/remaining=/'
  note "reset run $run: failed, k3s traces remain"
  exit 1
fi
note "reset run $run: k3s removed"
