# shellcheck shell=sh
# Write the sudoers drop-in through a temporary file visudo checks before it is moved into place
# (bootstrap.rs, sudo_script). Given: dest (the drop-in), rule (its one line).
: "${dest:?}" "${rule:?}"
set -e
tmp=$(mktemp /etc/sudoers.d/.edgeops.XXXXXX)
trap 'rm -f -- "$tmp"' EXIT
printf '%s\n' "$rule" > "$tmp"
chmod 0440 "$tmp"
visudo -cqf "$tmp"
mv -f -- "$tmp" "$dest"
trap - EXIT
if ! visudo -cq; then rm -f -- "$dest"; echo 'visudo -c failed with the drop-in; removed' >&2; exit 1; fi
