# Open the k3s ports on a host whose firewall is active (eval'd by the install step as root).
# Variables: ufw_ports, fw_ports, shown, cluster, service, nft_script (see nftables.sh).
# shellcheck shell=sh disable=SC2154
ufw_active=false
firewalld_active=false
if command -v ufw >/dev/null 2>&1 && ufw status 2>/dev/null | grep -q '^Status: active'; then
  ufw_active=true
  for p in $ufw_ports; do ufw allow "$p" >/dev/null; done
  ufw allow from "$cluster" to any >/dev/null
  ufw allow from "$service" to any >/dev/null
  echo "edgeops: ufw: opened $shown and trusted $cluster, $service"
fi
if command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then
  firewalld_active=true
  for p in $fw_ports; do firewall-cmd --permanent --add-port="$p" >/dev/null; done
  firewall-cmd --permanent --zone=trusted --add-source="$cluster" >/dev/null
  firewall-cmd --permanent --zone=trusted --add-source="$service" >/dev/null
  firewall-cmd --reload >/dev/null
  echo "edgeops: firewalld: opened $shown and trusted $cluster, $service"
fi
# A plain nftables firewall (ufw and firewalld drive nftables themselves: left to them). The
# rules are re-applied after nftables.service loads its ruleset at boot (its file usually starts
# with `flush ruleset`), through a drop-in that runs the same script.
if ! $ufw_active && ! $firewalld_active && command -v nft >/dev/null 2>&1; then
  opened=$(sh -c "$nft_script")
  if [ -n "$opened" ]; then
    if systemctl is-enabled --quiet nftables 2>/dev/null; then
      mkdir -p /usr/local/share/edgeops /etc/systemd/system/nftables.service.d
      printf '%s\n' "$nft_script" >/usr/local/share/edgeops/nftables-k3s.sh
      printf '[Service]\nExecStartPost=/bin/sh /usr/local/share/edgeops/nftables-k3s.sh\n' \
        >/etc/systemd/system/nftables.service.d/edgeops-k3s.conf
      systemctl daemon-reload
    fi
    echo "edgeops: nftables: opened $shown and trusted $cluster, $service in $opened"
  fi
fi
