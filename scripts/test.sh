#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI runs it through .ci/run).
# Installs what a new machine lacks, builds the lab's root filesystem (cached), then runs
# fmt, clippy and every test. Lab tests need root: they make namespaces, mounts and bridges.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_pkgs=()
for pair in sshd:openssh-server ssh:openssh-client debootstrap:debootstrap ip:iproute2 \
            nsenter:util-linux sudo:sudo curl:curl kubectl:kubernetes-client python3:python3; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need_pkgs+=("${pair#*:}")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: the lab tests need root (namespaces, mounts, bridges)" >&2
    exit 2
fi

log "lab root filesystem (cached by recipe)"
scripts/lab build

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --all-targets --locked -- -D warnings

log 'cargo test (benches are measured by cargo bench, in release, not here)'
cargo test --locked -- --test-threads="${EDGEOPS_TEST_THREADS:-4}"

log "example inventories pass edgeops check"
for inv in inventory/*.toml; do
    case "$inv" in inventory/lab.toml) continue ;; esac
    cargo run --quiet --locked -- check "$inv" >/dev/null
    echo "ok: $inv"
done
