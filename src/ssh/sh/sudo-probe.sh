# Prove, once per session and before any other privileged command, that sudo works with the
# configured password, and tell whether it prompts at all. $1: the prompt marker. stdin: the
# password and nothing else. `-v` only validates. sudo reads the password from a FIFO that is
# kept open but gets nothing more, and the script watches sudo's prompts: a second prompt means
# the password was refused, and sudo is killed while it waits for another guess, so PAM sees
# exactly one attempt (an EOF answer would count as a second failure for pam_faillock).
# It prints edgeops-sudo=nopasswd when sudo needs no password, else edgeops-sudo-status=<exit of sudo -v>.
# shellcheck shell=sh
if sudo -n true 2>/dev/null; then echo edgeops-sudo=nopasswd; exit 0; fi
IFS= read -r p || exit 1
d=$(mktemp -d) && mkfifo "$d/pw" || exit 1
# The FIFO and the log are the login user's: sudo must not open them (SC2024 is intended).
# shellcheck disable=SC2024
sudo -S -p "$1" -v <"$d/pw" 2>"$d/err" &
pid=$!
exec 4>"$d/pw"
printf '%s\n' "$p" >&4
unset p
while kill -0 "$pid" 2>/dev/null; do
  case $(cat "$d/err") in *"$1"*"$1"*) kill -KILL "$pid"; break ;; esac
  sleep 0.05
done
exec 4>&-
wait "$pid" 2>/dev/null; rc=$?
cat "$d/err" >&2
rm -rf "$d"
echo "edgeops-sudo-status=$rc"
