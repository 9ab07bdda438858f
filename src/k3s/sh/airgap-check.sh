# shellcheck shell=sh
# Print `HASH  PATH` for each file the host has, nothing for the others (k3s/airgap_files.rs,
# check_script). Arguments: the paths.
for f in "$@"; do
  if [ -f "$f" ]; then sha256sum "$f"; fi
done
