# shellcheck shell=sh
# Take the `up` lock or say who holds it (host/lock/file.rs, lock_acquire_script). Given: f (the lock
# file), me (this run's holder text), stale (seconds), ws (this workstation's name), live (pids
# of edgeops processes on this workstation, space-separated, may be empty).
: "${f:?}" "${me:?}" "${stale:?}" "${ws?}" "${live?}"
take() { ( set -C; printf '%s %s\n' "$(date +%s)" "$me" >"$f" ) 2>/dev/null; }
if take; then echo acquired; exit 0; fi
read -r t holder <"$f" || true
# A lock this very process holds (same user, workstation and pid: a command that hands its lock
# on to the `up` it runs in the same process, as `replace` does) is taken on without a note.
mine=${me%% run *}
case "$mine" in *@"$ws pid "[0-9]*)
  case "$holder" in "$mine run "*)
    rm -f "$f"
    if take; then echo acquired; exit 0; fi
    read -r t holder <"$f" || true ;;
  esac ;;
esac
age=$(( $(date +%s) - ${t:-0} ))
gone=
case "$holder" in *@"$ws pid "*)
  p=${holder#*@"$ws pid "}; p=${p%% *}
  case "$p" in ''|*[!0-9]*) ;; *) case " $live " in *" $p "*) ;; *) gone=1 ;; esac ;; esac ;;
esac
if [ "$age" -ge "$stale" ] || [ -n "$gone" ]; then
  read -r t2 h2 <"$f" 2>/dev/null && [ "$t2 $h2" = "$t $holder" ] && rm -f "$f"
  if take; then
    if [ -n "$gone" ]; then echo "acquired-gone $age $holder"; else echo "acquired-stale $age $holder"; fi
    exit 0
  fi
  read -r t holder <"$f" || true; age=$(( $(date +%s) - ${t:-0} ))
fi
echo "held $age $holder"
