# The login-user side of a sudo-with-password command. $1: the command, $2: its tag. stdin: the
# password line, then the command's own data. `read` takes the password line byte by byte, so
# the data stays unread on fd 3; the password alone goes to `sudo -S`, and the root command
# takes its stdin back from this shell's fd 3 through /proc (sudo closes descriptors above 2).
# shellcheck shell=sh disable=SC2016
IFS= read -r p || exit 1
exec 3<&0 </dev/null
printf '%s\n' "$p" | sudo -S -p '' -- sh -c \
  'exec </proc/"$1"/fd/3 && exec sh -c "$2" "$3"' edgeops-sudo "$$" "$1" "$2"
