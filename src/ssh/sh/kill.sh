# shellcheck shell=sh
# Stop the command started with a tag: its process group and every descendant, TERM then KILL
# (exec.rs, kill_command). Given: pattern (the tag with its first letter bracketed, so this
# script's own command line never matches it).
: "${pattern:?}"
tree() { for c in $(pgrep -P "$1"); do echo "$c"; tree "$c"; done; }
all=; groups=
for p in $(pgrep -f -- "$pattern"); do all="$all $p $(tree "$p")"; g=$(ps -o pgid= -p "$p" | tr -d ' '); [ "${g:-0}" -gt 1 ] && groups="$groups -$g"; done 2>/dev/null
# shellcheck disable=SC2086 # lists of pids and -pgids, split on purpose
for sig in TERM KILL; do [ -n "$all$groups" ] && kill -s $sig $all $groups 2>/dev/null; [ $sig = TERM ] && sleep 0.3; done; true
