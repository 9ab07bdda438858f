# shellcheck shell=sh
# Receive one file on stdin next to its place, refuse it unless its sha256 is the expected one,
# then set mode and owner and rename it into place, with sudo (k3s/airgap_files.rs, put_script).
# Given: dest (the path), want (its sha256), mode (octal).
: "${dest:?}" "${want:?}" "${mode:?}"
set -eu
umask 022
dir=$(dirname "$dest")
mkdir -p "$dir"
tmp=$(mktemp "$dir/.edgeops-upload.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat >"$tmp"
got=$(sha256sum "$tmp" | awk '{print $1}')
if [ "$got" != "$want" ]; then
  echo "edgeops: $dest: sha256 on the host is $got after the upload, expected $want" >&2
  exit 4
fi
chmod "$mode" "$tmp"
chown 0:0 "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
echo "edgeops: $dest uploaded and verified"
