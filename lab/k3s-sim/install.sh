#!/bin/sh
# Simulated k3s installer for the edgeops lab (served by mirror.py as /install.sh).
#
# It honours the environment contract of the real get.k3s.io script (k3s-io/k3s install.sh):
# INSTALL_K3S_{CHANNEL,CHANNEL_URL,VERSION,EXEC,SKIP_DOWNLOAD,SKIP_START,SKIP_ENABLE,FORCE_RESTART,
# SYMLINK,BIN_DIR,SYSTEMD_DIR,NAME,TYPE}, GITHUB_URL, K3S_* (kept in the service env file),
# script arguments appended to INSTALL_K3S_EXEC, server unless K3S_URL is set, and it creates the
# same files under the same names. Differences (see docs/K3S-SIM.md): systemd only (no openrc),
# no SELinux RPM handling, no PR/commit builds, and it reads the lab's fault knobs in
# /etc/k3s-sim/faults (install-fail, slow-install).
# POSIX sh: it runs under dash on Debian.
set -e
set -o noglob

GITHUB_URL=${GITHUB_URL:-https://github.com/k3s-io/k3s/releases}
SIM_FAULTS=/etc/k3s-sim/faults

info() { echo '[INFO] ' "$@"; }
warn() { echo '[WARN] ' "$@" >&2; }
fatal() { echo '[ERROR] ' "$@" >&2; exit 1; }

# Single-quote one word for sh and systemd ('it'"'"'s' style escaping of embedded quotes).
sq() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# --- the command line: INSTALL_K3S_EXEC words (quotes honoured) followed by script arguments ---
script_args=
for a in "$@"; do
    script_args="${script_args} $(sq "$a")"
done
exec_words=$(printf '%s' "${INSTALL_K3S_EXEC}" | sed -e 's/[][!#$%&()*;<=>?\\`{|}]/\\&/g')
eval "set -- ${exec_words} ${script_args}"

check_supervisor() {
    if command -v systemctl >/dev/null 2>&1; then
        return
    fi
    if [ -x /sbin/openrc-run ]; then
        fatal 'openrc is not supported by the k3s lab simulator (systemd only)'
    fi
    fatal 'Can not find systemd or openrc to use as a process supervisor for k3s'
}

setup_env() {
    case "$1" in
        -*|"")
            if [ -z "${K3S_URL}" ]; then
                CMD_K3S=server
            else
                if [ -z "${K3S_TOKEN}" ] && [ -z "${K3S_TOKEN_FILE}" ]; then
                    fatal "Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."
                fi
                CMD_K3S=agent
            fi
            ;;
        *)
            CMD_K3S=$1
            shift
            ;;
    esac
    case "${K3S_URL}" in
        ""|https://*) ;;
        *) fatal "Only https:// URLs are supported for K3S_URL (have ${K3S_URL})" ;;
    esac

    EXEC_LINES=
    for a in "$@"; do
        EXEC_LINES="${EXEC_LINES} \\
	$(sq "$a")"
    done

    if [ -n "${INSTALL_K3S_NAME}" ]; then
        SYSTEM_NAME=k3s-${INSTALL_K3S_NAME}
    elif [ "${CMD_K3S}" = server ]; then
        SYSTEM_NAME=k3s
    else
        SYSTEM_NAME=k3s-${CMD_K3S}
    fi
    # shellcheck disable=SC1083 # k3s's own character class: { and } are meant literally
    case "${SYSTEM_NAME}" in
        *[][!#\$%\&\(\)*\;\<=\>?\\\`{\|}/\ ]*) fatal "Invalid characters for system name: ${SYSTEM_NAME}" ;;
    esac

    SUDO=sudo
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=
    fi

    SYSTEMD_TYPE=${INSTALL_K3S_TYPE:-notify}

    if [ -n "${INSTALL_K3S_BIN_DIR}" ]; then
        BIN_DIR=${INSTALL_K3S_BIN_DIR}
    else
        BIN_DIR=/usr/local/bin
        if ! $SUDO sh -c "touch ${BIN_DIR}/k3s-ro-test && rm -f ${BIN_DIR}/k3s-ro-test" 2>/dev/null; then
            if [ -d /opt/bin ]; then
                BIN_DIR=/opt/bin
            fi
        fi
    fi
    SYSTEMD_DIR=${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}

    SERVICE_K3S=${SYSTEM_NAME}.service
    UNINSTALL_K3S_SH=${UNINSTALL_K3S_SH:-${BIN_DIR}/${SYSTEM_NAME}-uninstall.sh}
    KILLALL_K3S_SH=${KILLALL_K3S_SH:-${BIN_DIR}/k3s-killall.sh}
    FILE_K3S_SERVICE=${SYSTEMD_DIR}/${SERVICE_K3S}
    FILE_K3S_ENV=${SYSTEMD_DIR}/${SERVICE_K3S}.env

    PRE_INSTALL_HASHES=$(installed_hashes)

    INSTALL_K3S_CHANNEL_URL=${INSTALL_K3S_CHANNEL_URL:-'https://update.k3s.io/v1-release/channels'}
    INSTALL_K3S_CHANNEL=${INSTALL_K3S_CHANNEL:-'stable'}
}

installed_hashes() {
    $SUDO sha256sum "${BIN_DIR}/k3s" "${FILE_K3S_SERVICE}" "${FILE_K3S_ENV}" 2>&1 || true
}

# --- architecture from uname -m, with the real installer's asset suffixes ---
setup_arch() {
    ARCH=${ARCH:-$(uname -m)}
    case ${ARCH} in
        amd64|x86_64) ARCH=amd64; SUFFIX= ;;
        arm64|aarch64) ARCH=arm64; SUFFIX=-arm64 ;;
        s390x) ARCH=s390x; SUFFIX=-s390x ;;
        arm*) ARCH=arm; SUFFIX=-armhf ;;
        *) fatal "Unsupported architecture ${ARCH}" ;;
    esac
}

setup_tmp() {
    TMP_DIR=$(mktemp -d -t k3s-install.XXXXXXXXXX)
    TMP_HASH=${TMP_DIR}/k3s.hash
    TMP_BIN=${TMP_DIR}/k3s.bin
    cleanup() {
        code=$?
        set +e
        trap - EXIT
        rm -rf "${TMP_DIR}"
        exit $code
    }
    trap cleanup INT EXIT
}

release_version() {
    if [ -n "${INSTALL_K3S_VERSION}" ]; then
        VERSION_K3S=${INSTALL_K3S_VERSION}
    else
        info "Finding release for channel ${INSTALL_K3S_CHANNEL}"
        # The channel server redirects to .../releases/tag/<version>: keep the last path segment.
        VERSION_K3S=$(curl -w '%{url_effective}' -L -s -S "${INSTALL_K3S_CHANNEL_URL}/${INSTALL_K3S_CHANNEL}" -o /dev/null | sed -e 's|.*/||')
        case "${VERSION_K3S}" in
            v[0-9]*) ;;
            *) fatal "Could not resolve channel ${INSTALL_K3S_CHANNEL} at ${INSTALL_K3S_CHANNEL_URL} (got '${VERSION_K3S}')" ;;
        esac
    fi
    info "Using ${VERSION_K3S} as release"
}

download() {
    if ! curl -o "$1" -sfL "$2"; then
        fatal "Download failed: $2"
    fi
}

download_hash() {
    HASH_URL=${GITHUB_URL}/download/${VERSION_K3S}/sha256sum-${ARCH}.txt
    info "Downloading hash ${HASH_URL}"
    download "${TMP_HASH}" "${HASH_URL}"
    HASH_EXPECTED=$(grep " k3s${SUFFIX}\$" "${TMP_HASH}" || true)
    HASH_EXPECTED=${HASH_EXPECTED%%[[:blank:]]*}
    [ -n "${HASH_EXPECTED}" ] || fatal "No checksum for k3s${SUFFIX} in ${HASH_URL}"
}

installed_hash_matches() {
    [ -x "${BIN_DIR}/k3s" ] || return 1
    HASH_INSTALLED=$(sha256sum "${BIN_DIR}/k3s")
    [ "${HASH_EXPECTED}" = "${HASH_INSTALLED%%[[:blank:]]*}" ]
}

download_and_verify() {
    case "${INSTALL_K3S_SKIP_DOWNLOAD}" in
        true|binary)
            info 'Skipping k3s download and verify'
            [ -x "${BIN_DIR}/k3s" ] || fatal "Executable k3s binary not found at ${BIN_DIR}/k3s"
            return
            ;;
    esac
    setup_arch
    command -v curl >/dev/null 2>&1 || fatal 'Can not find curl or wget for downloading files'
    setup_tmp
    release_version
    download_hash
    if installed_hash_matches; then
        info 'Skipping binary downloaded, installed k3s matches hash'
        return
    fi
    BIN_URL=${GITHUB_URL}/download/${VERSION_K3S}/k3s${SUFFIX}
    info "Downloading binary ${BIN_URL}"
    download "${TMP_BIN}" "${BIN_URL}"
    info 'Verifying binary download'
    HASH_BIN=$(sha256sum "${TMP_BIN}")
    HASH_BIN=${HASH_BIN%%[[:blank:]]*}
    if [ "${HASH_EXPECTED}" != "${HASH_BIN}" ]; then
        fatal "Download sha256 does not match ${HASH_EXPECTED}, got ${HASH_BIN}"
    fi
    chmod 755 "${TMP_BIN}"
    info "Installing k3s to ${BIN_DIR}/k3s"
    $SUDO chown root:root "${TMP_BIN}"
    $SUDO mv -f "${TMP_BIN}" "${BIN_DIR}/k3s"
}

# --- lab fault knobs (files written by `scripts/lab k3s-fault`) ---
simulate_slow_install() {
    if [ -f "${SIM_FAULTS}/slow-install" ]; then
        secs=$(cat "${SIM_FAULTS}/slow-install")
        info "k3s-sim fault slow-install: waiting ${secs:-30}s"
        sleep "${secs:-30}"
    fi
}

simulate_install_failure() {
    if [ -f "${SIM_FAULTS}/install-fail" ]; then
        fatal "k3s-sim fault install-fail: simulated failure after installing the binary, before creating ${SERVICE_K3S}"
    fi
}

create_symlinks() {
    [ "${INSTALL_K3S_SYMLINK}" = skip ] && return
    for cmd in kubectl crictl ctr; do
        if [ ! -e "${BIN_DIR}/${cmd}" ] || [ "${INSTALL_K3S_SYMLINK}" = force ]; then
            which_cmd=$(command -v ${cmd} 2>/dev/null || true)
            if [ -z "${which_cmd}" ] || [ "${INSTALL_K3S_SYMLINK}" = force ]; then
                info "Creating ${BIN_DIR}/${cmd} symlink to k3s"
                $SUDO ln -sf k3s "${BIN_DIR}/${cmd}"
            else
                info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, command exists in PATH at ${which_cmd}"
            fi
        else
            info "Skipping ${BIN_DIR}/${cmd} symlink to k3s, already exists"
        fi
    done
}

create_killall() {
    info "Creating killall script ${KILLALL_K3S_SH}"
    $SUDO tee "${KILLALL_K3S_SH}" >/dev/null <<EOF
#!/bin/sh
# k3s-killall.sh (k3s lab simulator): stop every k3s unit and any k3s process left over.
[ \$(id -u) -eq 0 ] || exec sudo \$0 \$@
set -x
for service in ${SYSTEMD_DIR}/k3s*.service; do
    [ -s \$service ] && systemctl stop \$(basename \$service)
done
{ set +x; } 2>/dev/null
for pid in \$(pgrep -f "^/usr/bin/python3 ${BIN_DIR}/k3s (server|agent)" || true); do
    kill -9 \$pid 2>/dev/null
done
set -x
grep -o ' /run/k3s[^ ]*' /proc/self/mounts | sort -r | while read -r m; do umount -f "\$m"; done
rm -rf /run/k3s
EOF
    $SUDO chmod 755 "${KILLALL_K3S_SH}"
    $SUDO chown root:root "${KILLALL_K3S_SH}"
}

create_uninstall() {
    info "Creating uninstall script ${UNINSTALL_K3S_SH}"
    $SUDO tee "${UNINSTALL_K3S_SH}" >/dev/null <<EOF
#!/bin/sh
# ${SYSTEM_NAME}-uninstall.sh (k3s lab simulator): remove what the installer put in place.
set -x
[ \$(id -u) -eq 0 ] || exec sudo \$0 \$@
K3S_DATA_DIR=\${K3S_DATA_DIR:-/var/lib/rancher/k3s}

${KILLALL_K3S_SH}

if command -v systemctl; then
    systemctl disable ${SYSTEM_NAME}
    systemctl reset-failed ${SYSTEM_NAME}
    systemctl daemon-reload
fi

rm -f ${FILE_K3S_SERVICE}
rm -f ${FILE_K3S_ENV}

remove_uninstall() {
    rm -f ${UNINSTALL_K3S_SH}
}
trap remove_uninstall EXIT

if ls ${SYSTEMD_DIR}/k3s*.service >/dev/null 2>&1; then
    set +x; echo 'Additional k3s services installed, skipping uninstall of k3s'; set -x
    exit
fi

for cmd in kubectl crictl ctr; do
    if [ -L ${BIN_DIR}/\$cmd ]; then
        rm -f ${BIN_DIR}/\$cmd
    fi
done

rm -rf /etc/rancher/k3s
rm -rf /run/k3s
rm -rf /run/flannel
rm -rf \${K3S_DATA_DIR}
rm -rf /var/lib/kubelet
rm -f ${BIN_DIR}/k3s
rm -f ${KILLALL_K3S_SH}
EOF
    $SUDO chmod 755 "${UNINSTALL_K3S_SH}"
    $SUDO chown root:root "${UNINSTALL_K3S_SH}"
}

systemd_disable() {
    $SUDO systemctl disable "${SYSTEM_NAME}" >/dev/null 2>&1 || true
    $SUDO rm -f "/etc/systemd/system/${SERVICE_K3S}" || true
    $SUDO rm -f "/etc/systemd/system/${SERVICE_K3S}.env" || true
}

# K3S_*, CONTAINERD_* and proxy variables go to the env file, single-quoted, sorted by name.
env_names() {
    env | sed -n -e 's/^\(K3S_[A-Za-z0-9_]*\)=.*/\1/p' -e 's/^\(CONTAINERD_[A-Za-z0-9_]*\)=.*/\1/p'
    env | grep -Ei '^(NO|HTTP|HTTPS)_PROXY=' | sed -e 's/=.*//'
}

create_env_file() {
    info "env: Creating environment file ${FILE_K3S_ENV}"
    $SUDO touch "${FILE_K3S_ENV}"
    $SUDO chmod 0600 "${FILE_K3S_ENV}"
    for name in $(env_names | LC_ALL=C sort -u); do
        eval "value=\${${name}}"
        # shellcheck disable=SC2154 # assigned by the eval above
        printf '%s=%s\n' "${name}" "$(sq "${value}")"
    done | $SUDO tee "${FILE_K3S_ENV}" >/dev/null
}

create_service_file() {
    info "systemd: Creating service file ${FILE_K3S_SERVICE}"
    $SUDO tee "${FILE_K3S_SERVICE}" >/dev/null <<EOF
[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=${SYSTEMD_TYPE}
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-${FILE_K3S_ENV}
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=${BIN_DIR}/k3s \\
    ${CMD_K3S}${EXEC_LINES}

EOF
}

service_enable_and_start() {
    [ "${INSTALL_K3S_SKIP_ENABLE}" = true ] && return
    info "systemd: Enabling ${SYSTEM_NAME} unit"
    $SUDO systemctl enable "${FILE_K3S_SERVICE}" >/dev/null
    $SUDO systemctl daemon-reload >/dev/null
    [ "${INSTALL_K3S_SKIP_START}" = true ] && return
    POST_INSTALL_HASHES=$(installed_hashes)
    if [ "${PRE_INSTALL_HASHES}" = "${POST_INSTALL_HASHES}" ] && [ "${INSTALL_K3S_FORCE_RESTART}" != true ]; then
        info 'No change detected so skipping service start'
        return
    fi
    info "systemd: Starting ${SYSTEM_NAME}"
    $SUDO systemctl restart "${SYSTEM_NAME}"
}

{
    check_supervisor
    setup_env "$@"
    download_and_verify
    simulate_slow_install
    create_symlinks
    simulate_install_failure
    create_killall
    create_uninstall
    systemd_disable
    create_env_file
    create_service_file
    service_enable_and_start
}
