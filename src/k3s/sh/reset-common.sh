# shellcheck shell=sh
# Shell functions the reset survey and uninstall share (k3s/uninstall.rs): `dirs` (where the
# installer put its binaries), `k3s_pids` and `traces` (one `kind=path` line per trace). The
# patterns are written so that the scripts' own command lines never match them (`[k]3s`).
# Given: edgeops_files (the files edgeops writes, space-separated plain paths).
: "${edgeops_files:?}"
export LC_ALL=C PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
dirs=
for d in /usr/local/bin /opt/bin $(for u in /etc/systemd/system/k3s.service /etc/systemd/system/k3s-agent.service; do awk '/^ExecStart=/ { sub(/^ExecStart=/, ""); sub(/\/k3s$/, "", $1); print $1; exit }' "$u" 2>/dev/null; done); do
  case " $dirs " in *" $d "*) ;; *) [ -d "$d" ] && dirs="$dirs $d" ;; esac
done
k3s_pids() {
  {
    pgrep -f '[k]3s (server|agent)' 2>/dev/null
    for p in /proc/[0-9]*; do
      case "$(readlink "$p/exe" 2>/dev/null)" in /var/lib/rancher/k3s/data/*) echo "${p#/proc/}" ;; esac
    done
  } | sort -un
}
k3s_link() { [ -L "$1" ] && case "$(readlink "$1")" in k3s|*/k3s) true ;; *) false ;; esac; }
traces() {
  for d in $dirs; do
    for f in k3s-agent-uninstall.sh k3s-uninstall.sh; do [ -f "$d/$f" ] && echo "script=$d/$f"; done
    for f in k3s k3s-killall.sh; do [ -e "$d/$f" ] && echo "bin=$d/$f"; done
    for f in kubectl crictl ctr; do k3s_link "$d/$f" && echo "bin=$d/$f"; done
  done
  for u in k3s k3s-agent; do
    [ -e "/etc/systemd/system/$u.service" ] && echo "unit=$u"
    for p in "/etc/systemd/system/$u.service" "/etc/systemd/system/$u.service.env" "/etc/systemd/system/$u.service.d"; do
      [ -e "$p" ] && echo "unit_file=$p"
    done
  done
  # shellcheck disable=SC2086 # a list of plain paths, split on purpose
  for p in $edgeops_files; do [ -e "$p" ] && echo "edgeops=$p"; done
  for p in /etc/rancher/k3s /etc/rancher/node /var/lib/rancher/k3s /run/k3s; do [ -e "$p" ] && echo "data=$p"; done
  for p in $(k3s_pids); do echo "process=$p $(cat "/proc/$p/comm" 2>/dev/null)"; done
}
