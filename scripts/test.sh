#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI runs it through .ci/run).
# Installs what a new machine lacks, builds the lab's root filesystem (cached), then runs
# fmt, clippy and every test. Lab tests need root: they make namespaces, mounts and bridges.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_pkgs=()
for pair in sshd:openssh-server ssh:openssh-client debootstrap:debootstrap ip:iproute2 \
            nsenter:util-linux sudo:sudo curl:curl kubectl:kubernetes-client python3:python3 \
            git:git rsync:rsync npm:npm shellcheck:shellcheck; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need_pkgs+=("${pair#*:}")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# The pipeline tools of tests/ci_pipeline.rs, pinned: GitLab's CI schema as check-jsonschema
# vendors it (PyPI, in its own venv), and gitlab-ci-local (npm; 4.73.0 is the last release that
# runs on Node 20, 4.74 needs Node 22's Set methods; it needs rsync and git).
CHECK_JSONSCHEMA_VERSION=0.39.0
GITLAB_CI_LOCAL_VERSION=4.73.0
tools=/opt/edgeops-test-tools
if [ "$("$tools/bin/check-jsonschema" --version 2>/dev/null)" != "check-jsonschema, version $CHECK_JSONSCHEMA_VERSION" ]; then
    log "installing check-jsonschema $CHECK_JSONSCHEMA_VERSION into $tools"
    python3 -m venv "$tools" 2>/dev/null || {
        apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        python3 -m venv "$tools"
    }
    "$tools/bin/pip" install -q "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
fi
export PATH="$tools/bin:$PATH"
if [ "$(gitlab-ci-local --version 2>/dev/null)" != "$GITLAB_CI_LOCAL_VERSION" ]; then
    log "installing gitlab-ci-local $GITLAB_CI_LOCAL_VERSION"
    npm install -g --no-fund --no-audit "gitlab-ci-local@$GITLAB_CI_LOCAL_VERSION" >/dev/null
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: the lab tests need root (namespaces, mounts, bridges)" >&2
    exit 2
fi

log "lab root filesystem (cached by recipe)"
scripts/lab build

log "cargo fmt --check"
cargo fmt --all -- --check

log "shellcheck: the scripts edgeops sends to hosts (src/**/*.sh) and the repo's own"
mapfile -t remote_scripts < <(find src -name '*.sh' | sort)
shellcheck "${remote_scripts[@]}"
shellcheck -x scripts/test.sh scripts/lab scripts/demo scripts/bench-bastion scripts/bench-fanout \
    scripts/bench-fleet scripts/bench-up scripts/vagrant-kvm-proof scripts/module-graph .ci/run lab/*.sh \
    lab/k3s-sim/install.sh

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
