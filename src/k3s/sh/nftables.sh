# Accept the k3s ports and networks at the top of every nftables input chain whose policy is
# drop: a plain nftables firewall that would otherwise drop k3s's traffic. Chains with policy
# accept (iptables-nft's, k3s's own) are left alone. Idempotent: the rules carry the comment
# "edgeops-k3s". Prints the chains it changed, as `family table chain`, comma-separated.
# Variables: nft_tcp, nft_udp, cluster, service.
# shellcheck shell=sh disable=SC2154
changed=""
chains=$(nft list chains 2>/dev/null | awk '
  $1 == "table" { family = $2; table = $3 }
  $1 == "chain" { chain = $2 }
  /hook input/ && /policy drop/ { print family, table, chain }')
while read -r family table chain; do
  case $family in inet | ip) ;; *) continue ;; esac
  if nft list chain "$family" "$table" "$chain" | grep -q 'edgeops-k3s'; then
    continue
  fi
  nft insert rule "$family" "$table" "$chain" ip saddr "{ $cluster, $service }" accept comment '"edgeops-k3s"' &&
    nft insert rule "$family" "$table" "$chain" udp dport "{ $nft_udp }" accept comment '"edgeops-k3s"' &&
    nft insert rule "$family" "$table" "$chain" tcp dport "{ $nft_tcp }" accept comment '"edgeops-k3s"' &&
    changed="${changed:+$changed, }$family $table $chain"
done <<CHAINS
$chains
CHAINS
printf '%s' "$changed"
