# shellcheck shell=sh
# Install (or re-install with a changed config) in one round trip, run with sudo (remote.rs,
# install_bundle). Given: token_file, config, hash_file, stamp_file (paths), k3s_installer (the
# installer script text), restart (1: restart the unit when the config or a registries file
# changed), unit, config_hash, and three script parts that may be empty: managed_files (writes
# the spec's further files, each read from stdin as one base64 line, sets changed=1 when one
# that needs a restart changed), firewall (opens the k3s ports), user_kubeconfig (copies the
# admin kubeconfig to the login user). stdin: the join token on the first line (empty: keep the
# token file as is), then one base64 line per further file, then the config file.
: "${token_file:?}" "${config:?}" "${hash_file:?}" "${stamp_file:?}" "${k3s_installer:?}" \
  "${restart:?}" "${unit:?}" "${config_hash:?}" "${managed_files?}" "${firewall?}" \
  "${user_kubeconfig?}"
set -eu
umask 022
mkdir -p /etc/rancher/k3s
umask 077
IFS= read -r token || true
if [ -n "$token" ] && [ "$(cat "$token_file" 2>/dev/null)" != "$token" ]; then
  tmp=$(mktemp /etc/rancher/k3s/.edgeops-token.XXXXXX)
  printf '%s\n' "$token" >"$tmp"
  mv -f "$tmp" "$token_file"
  echo 'edgeops: token file written'
fi
unset token
if [ -e "$token_file" ]; then chmod 0600 "$token_file"; fi
changed=0
eval "$managed_files"
cfg=$(mktemp /etc/rancher/k3s/.edgeops-config.XXXXXX)
cat >"$cfg"
if cmp -s "$cfg" "$config"; then rm -f "$cfg"; chmod 0600 "$config"
else mv -f "$cfg" "$config"; changed=1; echo 'edgeops: config written'; fi
eval "$firewall"
(eval "$k3s_installer")
if [ "$changed" = 1 ] && [ "$restart" = 1 ]; then
  echo "edgeops: config changed, restarting $unit"
  systemctl restart "$unit"
fi
eval "$user_kubeconfig"
hash=$(mktemp /etc/rancher/k3s/.edgeops-hash.XXXXXX)
printf '%s\n' "$config_hash" >"$hash"
chmod 0644 "$hash"
mv -f "$hash" "$hash_file"
stamp=$(mktemp /etc/rancher/k3s/.edgeops-stamp.XXXXXX)
printf '%s %s\n' "$(/usr/local/bin/k3s --version | awk '{print $3; exit}')" "$(stat -c '%s %Y' /usr/local/bin/k3s)" >"$stamp"
chmod 0644 "$stamp"
if cmp -s "$stamp" "$stamp_file"; then rm -f "$stamp"; else mv -f "$stamp" "$stamp_file"; fi
