# shellcheck shell=sh
# Wait on the first server until the k3s API answers, with sudo (k3s/remote.rs, api_script).
# Given: secs (the limit), token (the node-token path). Exit 3: no answer within the limit.
: "${secs:?}" "${token:?}"
deadline=$(( $(date +%s) + secs ))
until [ -s "$token" ] && k3s kubectl get nodes -o name >/dev/null 2>&1; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "edgeops: the k3s API did not answer within ${secs}s" >&2
    systemctl is-active k3s >&2 || true
    exit 3
  fi
  sleep 1
done
