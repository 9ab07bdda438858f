# shellcheck shell=sh
# Write stdin to a file through a temporary file next to it, then set mode (and owner) and
# rename it into place (session.rs, upload). Given: dest, mode (octal), owner (may be empty).
: "${dest:?}" "${mode:?}" "${owner?}"
set -e
tmp=$(mktemp "$(dirname -- "$dest")/.edgeops-upload.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chmod "$mode" "$tmp"
if [ -n "$owner" ]; then chown -- "$owner" "$tmp"; fi
mv -f -- "$tmp" "$dest"
trap - EXIT
