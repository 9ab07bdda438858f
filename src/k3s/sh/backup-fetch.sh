# shellcheck shell=sh
# Print one snapshot file (as root: it is 0600) so edgeops can copy it (phases/backup).
# Given: path. Refuses anything but a regular file.
: "${path:?}"
if [ ! -f "$path" ]; then
  echo "edgeops: $path is not a file on this host" >&2
  exit 4
fi
cat -- "$path"
