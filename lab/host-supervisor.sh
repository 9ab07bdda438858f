#!/bin/bash
# Keeps one lab host alive: (re)launches its PID 1 in fresh namespaces with the same upper dir
# and a new boot id, until the host is stopped (file HOSTDIR/stopped) or powers itself off.
# A `reboot` inside the host ends its PID namespace with SIGHUP; that is a restart here.
# Args: NAME HOSTDIR NETNS CGROUPDIR LOWER MODE
set -uo pipefail
NAME="$1" H="$2" NS="$3" CG="$4" LOWER="$5" MODE="$6"
INIT="$(dirname "$(readlink -f "$0")")/host-init.sh"

kill_cgroup() {
  [[ -d "$CG" ]] || return 0
  echo 0 >"$CG/cgroup.freeze" 2>/dev/null || true
  echo 1 >"$CG/cgroup.kill" 2>/dev/null || true
  for _ in $(seq 100); do
    [[ -z "$(cat "$CG/cgroup.procs" 2>/dev/null)" ]] && grep -q 'populated 0' "$CG/cgroup.events" 2>/dev/null && break
    sleep 0.05
  done
  # systemd leaves its sub-cgroups behind; remove them so the next boot starts clean.
  find "$CG" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
}

trap 'rm -f "$H/supervisor.pid"' EXIT
echo $$ >"$H/supervisor.pid"
failures=0
while [[ ! -e "$H/stopped" ]]; do
  rm -f "$H/restart"
  mkdir -p "$CG"
  kill_cgroup
  cat /proc/sys/kernel/random/uuid >"$H/boot_id"
  date +%s >"$H/started_at"
  echo "== boot $(cat "$H/boot_id") at $(date -u +%FT%TZ)" >>"$H/console.log"
  (
    echo "$BASHPID" >"$CG/cgroup.procs"
    exec nsenter --net="/run/netns/$NS" unshare --mount --uts --ipc --pid --cgroup --fork \
      --kill-child -- "$INIT" "$NAME" "$H" "$LOWER" "$MODE"
  ) >>"$H/console.log" 2>&1 &
  echo $! >"$H/unshare.pid"
  wait $!
  rc=$?
  rm -f "$H/unshare.pid"
  kill_cgroup
  echo "== PID 1 ended (status $rc)" >>"$H/console.log"
  [[ -e "$H/restart" ]] && continue
  # A boot that lasted a minute resets the failure count.
  (($(date +%s) - $(cat "$H/started_at") > 60)) && failures=0
  case $rc in
    129) ;;                                   # SIGHUP: reboot from inside the host
    130|0) touch "$H/stopped" ;;              # SIGINT / clean exit: poweroff or halt
    137) [[ -e "$H/stopped" ]] || sleep 1 ;;  # killed from outside without `stop`: come back
    *)
      failures=$((failures + 1))
      if ((failures >= 5)); then
        echo "== PID 1 failed $failures times in a row; giving up (see systemd-console.log)" >>"$H/console.log"
        touch "$H/stopped" "$H/failed"
      else
        echo "== unexpected exit, restarting in $((2 * failures)) s" >>"$H/console.log"
        sleep $((2 * failures))
      fi ;;
  esac
done
