# shellcheck shell=bash
# lab/lib.sh: the functions behind scripts/lab (sourced). Naming of everything one lab id owns:
#   bridge edl<ID>br (10.<244+ID>.0.1/16), netns edl<ID>-<host>, root-side veth edl<ID>v<index>,
#   cgroup /sys/fs/cgroup/unified/edgeops-lab/<ID>/<host>, state lab/state/<ID>/.

LAB_ID="${EDGEOPS_LAB_ID:-0}"
if ! [[ "$LAB_ID" =~ ^[0-9]$ ]]; then
  echo "lab: EDGEOPS_LAB_ID must be a single digit 0-9 (got '$LAB_ID')" >&2
  exit 2
fi
LAB_USER="pi"
CACHE="${EDGEOPS_LAB_CACHE:-/var/cache/edgeops-lab}"
STATE="$REPO/lab/state/$LAB_ID"
NET_PREFIX="10.$((244 + LAB_ID))"
BRIDGE="edl${LAB_ID}br"
BRIDGE_ADDR="$NET_PREFIX.0.1"
CG_BASE=/sys/fs/cgroup/unified
[[ -d "$CG_BASE" && -f "$CG_BASE/cgroup.procs" ]] || CG_BASE=/sys/fs/cgroup
CG_LAB="$CG_BASE/edgeops-lab/$LAB_ID"
MIRROR_PORT=8080

die() { echo "lab: $*" >&2; exit 1; }
log() { echo "lab[$LAB_ID]: $*" >&2; }

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (namespaces, mounts, bridges)"; }

# ---------------------------------------------------------------------------------------------
# Host packages and the cached rootfs

ensure_host_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v ssh >/dev/null || missing+=(openssh-client)
  command -v ssh-keygen >/dev/null || missing+=(openssh-client)
  command -v nsenter >/dev/null || missing+=(util-linux)
  command -v nft >/dev/null || missing+=(nftables)
  command -v zstd >/dev/null || missing+=(zstd)
  command -v flock >/dev/null || missing+=(util-linux)
  [[ -x /usr/bin/python3 ]] || missing+=(python3)
  if ((${#missing[@]})); then
    log "installing host packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
      { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
  fi
}

# The Debian mirror this machine's apt already uses (override: EDGEOPS_LAB_MIRROR).
apt_mirror() {
  if [[ -n "${EDGEOPS_LAB_MIRROR:-}" ]]; then echo "$EDGEOPS_LAB_MIRROR"; return; fi
  local uri
  uri=$(grep -hsE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources | head -n1 | awk '{print $2}')
  [[ -n "$uri" ]] || uri=$(grep -hsE '^deb .*/debian/? bookworm' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | head -n1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

base_key() { sha256sum "$LABDIR/recipe.sh" | cut -c1-16; }
rootfs_key() { cat "$LABDIR/recipe.sh" "$LABDIR/configure-rootfs.sh" | sha256sum | cut -c1-16; }
base_tarball() { echo "$CACHE/base-$(base_key).tar.zst"; }
rootfs_dir() { echo "$CACHE/rootfs-$(rootfs_key)"; }

# build: debootstrap into a temp dir and cache it as a tarball keyed by the recipe hash.
# shellcheck disable=SC2120 # `build --force` passes arguments; `up` calls it without
lab_build() {
  need_root
  ensure_host_tools
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.lock"
  flock 8
  local tarball; tarball=$(base_tarball)
  if [[ -f "$tarball" && "${1:-}" != "--force" ]]; then
    log "base rootfs cached: $tarball"
  else
    # shellcheck source=lab/recipe.sh
    source "$LABDIR/recipe.sh"
    local tmp mirror; tmp=$(mktemp -d "$CACHE/build.XXXXXX"); mirror=$(apt_mirror)
    local pkgs; pkgs=$(IFS=,; echo "${LAB_PACKAGES[*]}")
    log "debootstrap $LAB_SUITE ($LAB_VARIANT) from $mirror with $pkgs (takes ~2 min)"
    if ! debootstrap --variant="$LAB_VARIANT" --include="$pkgs" "$LAB_SUITE" "$tmp/root" "$mirror" >"$CACHE/build.log" 2>&1; then
      tail -n 30 "$CACHE/build.log" >&2
      rm -rf "$tmp"
      die "debootstrap failed (log: $CACHE/build.log)"
    fi
    rm -rf "$tmp"/root/var/cache/apt/archives/*.deb "$tmp"/root/var/lib/apt/lists/*
    tar -C "$tmp/root" --numeric-owner --xattrs -cf - . | zstd -q -T0 -o "$tarball.tmp"
    mv "$tarball.tmp" "$tarball"
    rm -rf "$tmp"
    log "cached $tarball"
  fi
  prepare_rootfs_locked
  flock -u 8
}

# The configured lower dir shared by all hosts of all lab ids: extracted base + configure script.
prepare_rootfs_locked() {
  local dir; dir=$(rootfs_dir)
  [[ -f "$dir/.lab-ready" ]] && return 0
  log "preparing shared rootfs $dir"
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  zstd -q -dc "$(base_tarball)" | tar -C "$dir.tmp" --numeric-owner --xattrs -xf -
  "$LABDIR/configure-rootfs.sh" "$dir.tmp" "$LAB_USER" >&2
  touch "$dir.tmp/.lab-ready"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
}

# ---------------------------------------------------------------------------------------------
# Naming and addressing

# Host index i (1-based) -> name lab-01..lab-99, lab-100.. (names never change when a lab grows).
host_name() { printf 'lab-%02d' "$1"; }
host_index() { local n="${1#lab-}"; [[ "$n" =~ ^[0-9]+$ ]] || return 1; echo $((10#$n)); }
# Hosts 1..244 get 10.X.0.11-254, then 10.X.1.1-254, 10.X.2.1-254, ... (the /16 holds ~16k).
host_addr() {
  local i=$1
  if ((i <= 244)); then echo "$NET_PREFIX.0.$((10 + i))"
  else local j=$((i - 245)); echo "$NET_PREFIX.$((1 + j / 254)).$((1 + j % 254))"; fi
}
host_dir() { echo "$STATE/hosts/$1"; }
host_ns() { echo "edl${LAB_ID}-$1"; }
host_veth() { echo "edl${LAB_ID}v$(host_index "$1")"; }
host_cg() { echo "$CG_LAB/$1"; }

require_host() {
  local name="${1:-}"
  [[ -n "$name" ]] || die "missing HOST argument"
  [[ -f "$(host_dir "$name")/address" ]] || die "no host '$name' in lab $LAB_ID (see: scripts/lab status)"
}

# PID (in the root PID namespace) of the host's PID 1, empty if not running.
host_pid1() {
  local h; h=$(host_dir "$1")
  local u; u=$(cat "$h/unshare.pid" 2>/dev/null) || return 0
  [[ -n "$u" ]] || return 0
  local c; c=$(awk '{print $1}' "/proc/$u/task/$u/children" 2>/dev/null)
  echo "$c"
}

all_hosts() {
  [[ -d "$STATE/hosts" ]] || return 0
  local d
  for d in "$STATE"/hosts/lab-*; do [[ -f "$d/address" ]] && basename "$d"; done |
    sort -t- -k2,2n
}

# ---------------------------------------------------------------------------------------------
# Seeding a host's upper dir (first `up` only; the upper dir is the host's disk)

# Create upper/REL with the owner and mode of the same dir in the lower rootfs, so merged
# directories keep their real attributes (an upper dir's attributes win in overlayfs).
upper_dir_like_lower() {
  local upper="$1" lower="$2" rel="$3" path="" comp
  local IFS=/
  for comp in $rel; do
    [[ -n "$comp" ]] || continue
    path="$path/$comp"
    if [[ ! -d "$upper$path" ]]; then
      mkdir "$upper$path"
      if [[ -d "$lower$path" ]]; then
        chown --reference="$lower$path" "$upper$path"
        chmod --reference="$lower$path" "$upper$path"
      fi
    fi
  done
}

seed_host() {
  local name=$1 index=$2 mode=$3 pi=$4 arch=$5 lower=$6
  local h; h=$(host_dir "$name")
  local u="$h/upper"
  mkdir -p "$u" "$h/work" "$h/merged"
  echo "$mode" >"$h/mode"
  echo "$index" >"$h/index"
  echo "$lower" >"$h/lower"
  upper_dir_like_lower "$u" "$lower" etc/ssh
  upper_dir_like_lower "$u" "$lower" "home/$LAB_USER/.ssh"
  mkdir -p "$u/etc/lab"
  echo "$name" >"$u/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' "$name" >"$u/etc/hosts"
  : >"$u/etc/resolv.conf"
  tr -d '-' </proc/sys/kernel/random/uuid >"$u/etc/machine-id"
  ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$u/etc/ssh/ssh_host_ed25519_key"
  cp "$STATE/id_ed25519.pub" "$u/home/$LAB_USER/.ssh/authorized_keys"
  chown 1000:1000 "$u/home/$LAB_USER/.ssh/authorized_keys"
  chmod 0600 "$u/home/$LAB_USER/.ssh/authorized_keys"
  [[ -n "$arch" ]] && echo "$arch" >"$u/etc/lab/arch"
  if [[ "$pi" == 1 ]]; then seed_pi "$name" "$u" "$lower"; fi
  # known_key: what clients trust; rotate-hostkey changes the host's key but not this.
  cut -d' ' -f1,2 "$u/etc/ssh/ssh_host_ed25519_key.pub" >"$h/known_key"
  host_addr "$index" >"$h/address"
}

# The files a Raspberry Pi OS (bookworm) board has that a provisioning tool inspects.
seed_pi() {
  local name=$1 u=$2 lower=$3
  printf 'Raspberry Pi 4 Model B Rev 1.5\0' >"$u/etc/lab/model"
  printf 'raspberrypi,4-model-b\0brcm,bcm2711\0' >"$u/etc/lab/compatible"
  [[ -f "$u/etc/lab/arch" ]] || echo aarch64 >"$u/etc/lab/arch"
  cat >"$u/etc/rpi-issue" <<'ISSUE'
Raspberry Pi reference 2024-11-19
Generated using pi-gen, https://github.com/RPi-Distro/pi-gen, 891df1e21ed2b6099a2e6a13e26c91dea44b34d4, stage2
ISSUE
  mkdir -p "$u/boot/firmware"
  local partuuid; partuuid=$(printf '%08x' $((RANDOM * 32768 + RANDOM)))
  # One line, no cgroup flags: exactly what the preflight must fix on a fresh Pi OS image.
  printf 'console=serial0,115200 console=tty1 root=PARTUUID=%s-02 rootfstype=ext4 fsck.repair=yes rootwait\n' \
    "$partuuid" >"$u/boot/firmware/cmdline.txt"
  printf '[all]\narm_64bit=1\ndtparam=audio=on\ncamera_auto_detect=1\ndisplay_auto_detect=1\n' >"$u/boot/firmware/config.txt"
  # Tools detect a Pi in /proc/cpuinfo too (Revision/Model lines); host-init.sh shows this there.
  {
    local cpu
    for cpu in 0 1 2 3; do
      printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$cpu"
      printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
    printf 'Revision\t: d03115\nSerial\t\t: 10000000%08x\nModel\t\t: Raspberry Pi 4 Model B Rev 1.5\n' \
      $((RANDOM * 32768 + RANDOM))
  } >"$u/etc/lab/cpuinfo"
  ln -sfn firmware/cmdline.txt "$u/boot/cmdline.txt"
  ln -sfn firmware/config.txt "$u/boot/config.txt"
}

# ---------------------------------------------------------------------------------------------
# Network

ensure_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_ADDR/16" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
}

# The host's namespace and cable: a veth pair, root side on the bridge, host side eth0 (the host's
# init script gives eth0 its address). Cheap when already there: no process is spawned.
host_net_ok() { [[ -e "/run/netns/$(host_ns "$1")" && -e "/sys/class/net/$(host_veth "$1")" ]]; }

ensure_host_net() {
  local name=$1
  host_net_ok "$name" && return 0
  local ns veth; ns=$(host_ns "$name"); veth=$(host_veth "$name")
  ip netns del "$ns" 2>/dev/null || true
  ip link del "$veth" 2>/dev/null || true
  ip netns add "$ns"
  ip link add "$veth" type veth peer name eth0 netns "$ns"
  ip link set "$veth" master "$BRIDGE" up
}

# ensure_host_net for many hosts with one `ip -batch` (hundreds of hosts in a second or two).
ensure_hosts_net() {
  local name ns veth batch=""
  for name in "$@"; do
    host_net_ok "$name" && continue
    ns=$(host_ns "$name"); veth=$(host_veth "$name")
    [[ -e "/run/netns/$ns" ]] && ip netns del "$ns" 2>/dev/null
    [[ -e "/sys/class/net/$veth" ]] && ip link del "$veth" 2>/dev/null
    batch+="netns add $ns"$'\n'"link add $veth type veth peer name eth0 netns $ns"$'\n'"link set $veth master $BRIDGE up"$'\n'
  done
  [[ -n "$batch" ]] && { printf '%s' "$batch" | ip -force -batch - >&2 || true; }
  for name in "$@"; do host_net_ok "$name" || ensure_host_net "$name"; done
}

# ---------------------------------------------------------------------------------------------
# Host processes

host_running() {
  local pid; pid=$(cat "$(host_dir "$1")/supervisor.pid" 2>/dev/null) || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

start_host() {
  local name=$1
  local h; h=$(host_dir "$name")
  rm -f "$h/stopped" "$h/failed"
  host_running "$name" && return 0
  ensure_host_net "$name"
  # A host keeps the lower dir its disk was made on (a recipe change applies to new hosts only).
  local lower; lower=$(cat "$h/lower" 2>/dev/null || true)
  [[ -f "$lower/.lab-ready" ]] || { lower=$(rootfs_dir); echo "$lower" >"$h/lower"; }
  [[ -f "$lower/.lab-ready" ]] || die "rootfs $lower is not prepared (run: scripts/lab build)"
  setsid "$LABDIR/host-supervisor.sh" "$name" "$h" "$(host_ns "$name")" "$(host_cg "$name")" \
    "$lower" "$(cat "$h/mode")" </dev/null >>"$h/supervisor.log" 2>&1 8>&- 9>&- &
  disown $! 2>/dev/null || true
}

# Hard power-off of a host's processes; the disk (upper dir) stays.
stop_host() {
  local name=$1
  local h; h=$(host_dir "$name")
  touch "$h/stopped"
  local cg; cg=$(host_cg "$name")
  if [[ -d "$cg" ]]; then
    echo 0 >"$cg/cgroup.freeze" 2>/dev/null || true
    echo 1 >"$cg/cgroup.kill" 2>/dev/null || true
  fi
  local pid; pid=$(cat "$h/supervisor.pid" 2>/dev/null || true)
  local i
  for i in $(seq 200); do
    # shellcheck disable=SC2015 # either failure leads to the same branch
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  # shellcheck disable=SC2015 # either failure leads to the same branch
  [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true
  rm -f "$h/supervisor.pid" "$h/unshare.pid"
}

# Wait until each host answers with an SSH banner (and, for systemd hosts, finished booting).
wait_ready() {
  local timeout=$1; shift
  ((${#@})) || return 0
  local args=() name h
  for name in "$@"; do
    h=$(host_dir "$name")
    args+=("$name=$(cat "$h/address")=$(cat "$h/mode")=$h")
  done
  /usr/bin/python3 "$LABDIR/wait-ready.py" --timeout "$timeout" "${args[@]}"
}

# ---------------------------------------------------------------------------------------------
# up

# Run "$@" in the background, at most LAB_JOBS at a time; failures are counted in POOL_FAILED.
POOL_FAILED=0
pool_run() {
  while (($(jobs -rp | wc -l) >= ${LAB_JOBS:-16})); do
    wait -n || POOL_FAILED=$((POOL_FAILED + 1))
  done
  "$@" &
}
pool_wait() {
  local pid
  for pid in $(jobs -rp); do wait "$pid" || POOL_FAILED=$((POOL_FAILED + 1)); done
  wait || true
}

lock_lab() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 600 9 || die "lab $LAB_ID is busy: another scripts/lab holds $STATE/.lock"
}

write_lab_files() {
  local name h tsv="$STATE/hosts.tsv"
  : >"$tsv.tmp"
  : >"$STATE/known_hosts.tmp"
  for name in $(all_hosts); do
    h=$(host_dir "$name")
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$(cat "$h/address")" "$(cat "$h/mode")" \
      "$([[ -f "$h/upper/etc/lab/model" ]] && echo pi || echo -)" \
      "$(cat "$h/upper/etc/lab/arch" 2>/dev/null || echo -)" >>"$tsv.tmp"
    echo "$(cat "$h/address") $(cat "$h/known_key")" >>"$STATE/known_hosts.tmp"
  done
  mv "$tsv.tmp" "$tsv"
  mv "$STATE/known_hosts.tmp" "$STATE/known_hosts"
  /usr/bin/python3 "$LABDIR/write-inventory.py" "$tsv" "$(inventory_path)" "$BRIDGE_ADDR" \
    "$MIRROR_PORT" "$STATE/id_ed25519" "$STATE/known_hosts" "$LAB_USER"
}

inventory_path() {
  if [[ "$LAB_ID" == 0 ]]; then mkdir -p "$REPO/inventory"; echo "$REPO/inventory/lab.toml"
  else echo "$STATE/lab.toml"; fi
}

# Start a helper daemon of this lab in its own cgroup under the lab's, so `down` reaches it by
# cgroup even if its pid file is lost. Writes the daemon's pid to PIDFILE.
spawn_daemon() {
  local cg=$1 pidfile=$2 logfile=$3; shift 3
  mkdir -p "$cg"
  (
    echo "$BASHPID" >"$cg/cgroup.procs"
    exec setsid "$@"
  ) </dev/null >>"$logfile" 2>&1 8>&- 9>&- &
  echo $! >"$pidfile"
  disown $! 2>/dev/null || true
}

start_mirror() {
  local mirror="$LABDIR/k3s-sim/mirror.py"
  if [[ ! -f "$mirror" ]]; then
    log "k3s mirror not available ($mirror missing); continuing without it"
    return 0
  fi
  local pid; pid=$(cat "$STATE/mirror.pid" 2>/dev/null || true)
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then return 0; fi
  mkdir -p "$STATE/mirror"
  spawn_daemon "$CG_LAB/_mirror" "$STATE/mirror.pid" "$STATE/mirror.log" \
    python3 "$mirror" --listen "$BRIDGE_ADDR:$MIRROR_PORT" --state-dir "$STATE/mirror"
  log "k3s mirror on http://$BRIDGE_ADDR:$MIRROR_PORT (log: $STATE/mirror.log)"
}

# Every systemd host uses several inotify instances; the default limit (128 per uid, and all
# hosts run as root) stops systemd from starting beyond ~25 hosts. Only ever raise limits.
raise_kernel_limits() {
  local key want cur
  for kv in fs.inotify.max_user_instances=65536 fs.inotify.max_user_watches=1048576 \
    kernel.keys.maxkeys=20000 net.core.somaxconn=4096 net.ipv4.neigh.default.gc_thresh3=16384 \
    net.ipv4.neigh.default.gc_thresh2=8192 net.ipv4.neigh.default.gc_thresh1=4096; do
    key=${kv%%=*} want=${kv#*=}
    cur=$(sysctl -n "$key" 2>/dev/null) || continue
    # shellcheck disable=SC2015 # either failure leads to the same branch
    ((cur < want)) && sysctl -qw "$key=$want" 2>/dev/null || true
  done
}

lab_up() {
  local n="" mode=systemd pi=0 timeout="" wait=1 arches=()
  while (($#)); do
    case "$1" in
      --sshd-only) mode=sshd ;;
      --pi) pi="${2:?--pi needs a count}"; shift ;;
      --arch) IFS=, read -r -a more <<<"${2:?--arch needs a value}"; arches+=("${more[@]}"); shift ;;
      --timeout) timeout="${2:?}"; shift ;;
      --no-wait) wait=0 ;;
      -*) die "up: unknown option $1" ;;
      *) [[ -z "$n" && "$1" =~ ^[0-9]+$ ]] || die "up: unexpected argument $1"; n="$1" ;;
    esac
    shift
  done
  [[ -n "$n" && "$n" -ge 1 ]] || die "usage: scripts/lab up N [--sshd-only] [--pi K] [--arch ARCH...]"
  ((n <= 5000)) || die "up: at most 5000 hosts"
  need_root
  local t0=$SECONDS
  lab_build
  lock_lab
  local lower; lower=$(rootfs_dir)
  if [[ ! -f "$STATE/id_ed25519" ]]; then
    ssh-keygen -q -t ed25519 -N '' -C "edgeops-lab-$LAB_ID" -f "$STATE/id_ed25519"
  fi
  chmod 0600 "$STATE/id_ed25519"
  raise_kernel_limits
  ensure_bridge
  mkdir -p "$STATE/hosts" "$CG_LAB"

  local i name arch new=0
  for ((i = 1; i <= n; i++)); do
    name=$(host_name "$i")
    [[ -f "$(host_dir "$name")/address" ]] && continue
    arch=""
    ((${#arches[@]})) && arch="${arches[$(((i - 1) % ${#arches[@]}))]}"
    pool_run seed_host "$name" "$i" "$mode" "$((i <= pi ? 1 : 0))" "$arch" "$lower"
    new=$((new + 1))
  done
  pool_wait
  ((POOL_FAILED == 0)) || die "seeding $POOL_FAILED host(s) failed"
  write_lab_files
  ((new)) && log "seeded $new new host disk(s) at +$((SECONDS - t0)) s"

  local names=()
  for ((i = 1; i <= n; i++)); do names+=("$(host_name "$i")"); done
  ensure_hosts_net "${names[@]}"
  for name in "${names[@]}"; do
    host_running "$name" || start_host "$name"
  done
  pool_wait
  ((POOL_FAILED == 0)) || die "starting $POOL_FAILED host(s) failed"
  log "launched hosts at +$((SECONDS - t0)) s; waiting for them to answer"
  start_mirror
  if ((wait)); then
    wait_ready "${timeout:-$((60 + n / 2))}" "${names[@]}" || die "hosts did not come up (see $STATE/hosts/*/console.log)"
  fi
  log "$n host(s) up ($new new) in $((SECONDS - t0)) s; inventory: $(inventory_path)"
  flock -u 9
}

# ---------------------------------------------------------------------------------------------
# down: pid files first, then a scan for anything named after this lab id.

kill_pidfile() {
  local f=$1 pid
  pid=$(cat "$f" 2>/dev/null || true)
  # shellcheck disable=SC2015 # either failure leads to the same branch
  [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

remove_cgroup_tree() {
  local cg=$1
  [[ -d "$cg" ]] || return 0
  for _ in $(seq 100); do
    local d
    while read -r d; do
      echo 0 >"$d/cgroup.freeze" 2>/dev/null || true
      echo 1 >"$d/cgroup.kill" 2>/dev/null || true
    done < <(find "$cg" -type d)
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d "$cg" ]] || return 0
    sleep 0.1
  done
  log "warning: could not remove cgroup $cg"
}

lab_down() {
  local keep_disks=0
  [[ "${1:-}" == "--keep-disks" ]] && keep_disks=1
  need_root
  lock_lab
  local h pid ns
  # 1. No supervisor may relaunch anything: mark every host stopped and kill supervisors.
  for h in "$STATE"/hosts/*/; do
    [[ -d "$h" ]] || continue
    touch "$h/stopped"
    kill_pidfile "$h/supervisor.pid"
  done
  for pid in $(pgrep -f "host-supervisor.sh lab-[0-9]+ $STATE/hosts/" || true); do kill -9 "$pid" 2>/dev/null || true; done
  # 2. Every process of every host (cgroup.kill reaches frozen and forked-off processes too).
  remove_cgroup_tree "$CG_LAB"
  # 3. Helpers in the root PID namespace: delay proxies, the mirror, anything left in our netns.
  for f in "$STATE"/hosts/*/delay.pid; do [[ -e "$f" ]] && kill_pidfile "$f"; done
  kill_pidfile "$STATE/mirror.pid"
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^edl${LAB_ID}-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  done
  # 4. Mounts (none are expected in the root namespace; host mounts die with their namespace).
  local m
  # shellcheck disable=SC2013 # mount points under the lab state hold no spaces
  for m in $(awk -v s="$STATE/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  # 5. Network: namespaces (their veth peers go with them), stray veths, the bridge.
  ip netns list 2>/dev/null | awk -v p="edl${LAB_ID}-" 'index($1, p) == 1 {print "netns del " $1}' |
    ip -force -batch - 2>/dev/null || true
  local link
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^edl${LAB_ID}(v[0-9]+|br)$" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  rmdir "$CG_BASE/edgeops-lab" 2>/dev/null || true
  # 6. Files: the hosts' disks and everything generated from them (the client key stays).
  if ((keep_disks)); then
    for h in "$STATE"/hosts/*/; do rm -f "$h"/{unshare.pid,supervisor.pid,ready,restart}; done
  else
    rm -rf "$STATE/hosts" "$STATE/mirror" "$STATE/hosts.tsv" "$STATE/known_hosts" "$STATE/lab.toml" "$STATE"/*.log
    [[ "$LAB_ID" == 0 ]] && rm -f "$REPO/inventory/lab.toml"
  fi
  log "down"
  flock -u 9
}

# ---------------------------------------------------------------------------------------------
# status, ssh, env

host_state() {
  local name=$1 h cg; h=$(host_dir "$name"); cg=$(host_cg "$name")
  if ! host_running "$name"; then echo stopped; return; fi
  if grep -q 'frozen 1' "$cg/cgroup.events" 2>/dev/null; then echo frozen; return; fi
  local st; st=$(ip -o link show "$(host_veth "$name")" 2>/dev/null | grep -o 'state [A-Z]*' | cut -d' ' -f2)
  [[ "$st" == DOWN ]] && { echo link-down; return; }
  echo running
}

lab_status() {
  local name h
  printf '%-10s %-15s %-8s %-10s %-4s %-8s %s\n' NAME ADDRESS MODE STATE PI ARCH EXTRA
  for name in $(all_hosts); do
    h=$(host_dir "$name")
    local extra=""
    [[ -f "$h/delay_ms" ]] && extra+="delay=$(cat "$h/delay_ms")ms "
    [[ -f "$h/mirror_cut" ]] && extra+="mirror-cut "
    printf '%-10s %-15s %-8s %-10s %-4s %-8s %s\n' "$name" "$(cat "$h/address")" "$(cat "$h/mode")" \
      "$(host_state "$name")" "$([[ -f "$h/upper/etc/lab/model" ]] && echo yes || echo no)" \
      "$(cat "$h/upper/etc/lab/arch" 2>/dev/null || echo native)" "$extra"
  done
  local mp; mp=$(cat "$STATE/mirror.pid" 2>/dev/null || true)
  if [[ -n "$mp" ]] && kill -0 "$mp" 2>/dev/null; then echo "mirror: http://$BRIDGE_ADDR:$MIRROR_PORT (pid $mp)"; fi
}

ssh_opts() {
  echo -i "$STATE/id_ed25519" -o UserKnownHostsFile="$STATE/known_hosts" -o StrictHostKeyChecking=yes \
    -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=10
}

lab_ssh() {
  local name="${1:-}"; require_host "$name"; shift
  # shellcheck disable=SC2046
  exec ssh $(ssh_opts) "$LAB_USER@$(cat "$(host_dir "$name")/address")" "$@"
}

lab_env() {
  cat <<ENV
EDGEOPS_LAB_ID=$LAB_ID
LAB_STATE=$STATE
LAB_USER=$LAB_USER
LAB_KEY=$STATE/id_ed25519
LAB_KNOWN_HOSTS=$STATE/known_hosts
LAB_INVENTORY=$(inventory_path)
LAB_BRIDGE=$BRIDGE
LAB_BRIDGE_ADDR=$BRIDGE_ADDR
LAB_MIRROR_URL=http://$BRIDGE_ADDR:$MIRROR_PORT
ENV
}

# ---------------------------------------------------------------------------------------------
# Fault knobs

# Run a command inside a running host (all its namespaces, its root and cwd).
host_exec() {
  local name=$1; shift
  local p; p=$(host_pid1 "$name")
  [[ -n "$p" ]] || die "$name is not running"
  nsenter -t "$p" -m -u -i -n -p -r -w -- "$@"
}

# The host's filesystem as root sees it: through its mount namespace when running, else the disk.
host_root() {
  local p; p=$(host_pid1 "$1")
  if [[ -n "$p" ]]; then echo "/proc/$p/root"; else echo "$(host_dir "$1")/upper"; fi
}

wait_boot() {
  local name=$1 old=$2 i
  local h; h=$(host_dir "$name")
  for i in $(seq 600); do
    [[ "$(cat "$h/boot_id" 2>/dev/null)" != "$old" && -n "$(host_pid1 "$name")" ]] && break
    sleep 0.1
  done
  wait_ready 120 "$name"
}

reload_sshd() {
  local name=$1
  if [[ "$(cat "$(host_dir "$name")/mode")" == systemd ]]; then
    host_exec "$name" systemctl reload ssh.service
  else
    kill -HUP "$(host_pid1 "$name")"
  fi
}

nft_in_host() { local name=$1; shift; nsenter --net="/run/netns/$(host_ns "$name")" nft "$@"; }

lab_knob() {
  local knob=$1; shift
  need_root
  local name="${1:-}"; require_host "$name"; shift
  local h; h=$(host_dir "$name")
  case "$knob" in
    stop) stop_host "$name"; log "$name stopped (disk kept)" ;;
    start)
      local old; old=$(cat "$h/boot_id" 2>/dev/null || true)
      ensure_bridge
      start_host "$name"
      wait_boot "$name" "$old"
      log "$name started (boot id $(cat "$h/boot_id"))" ;;
    reboot)
      local old; old=$(cat "$h/boot_id" 2>/dev/null || true)
      if host_running "$name"; then
        touch "$h/restart"
        echo 0 >"$(host_cg "$name")/cgroup.freeze" 2>/dev/null || true
        echo 1 >"$(host_cg "$name")/cgroup.kill"
      else
        ensure_bridge
        start_host "$name"
      fi
      wait_boot "$name" "$old"
      log "$name rebooted (boot id $(cat "$h/boot_id"))" ;;
    link-down) ip link set "$(host_veth "$name")" down; log "$name link down" ;;
    link-up) ip link set "$(host_veth "$name")" up; log "$name link up" ;;
    freeze|thaw)
      local cg want; cg=$(host_cg "$name"); want=$([[ $knob == freeze ]] && echo 1 || echo 0)
      host_running "$name" || die "$name is not running"
      echo "$want" >"$cg/cgroup.freeze"
      local i
      for i in $(seq 100); do grep -q "frozen $want" "$cg/cgroup.events" && break; sleep 0.05; done
      log "$name $([[ $knob == freeze ]] && echo frozen || echo thawed)" ;;
    rotate-hostkey)
      local tmp; tmp=$(mktemp -d)
      ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$tmp/key"
      local root; root=$(host_root "$name")
      install -m 0600 "$tmp/key" "$root/etc/ssh/ssh_host_ed25519_key"
      install -m 0644 "$tmp/key.pub" "$root/etc/ssh/ssh_host_ed25519_key.pub"
      rm -rf "$tmp"
      if [[ -n "$(host_pid1 "$name")" ]]; then
        reload_sshd "$name"
        # sshd re-executes itself on SIGHUP and briefly stops listening: wait until it serves the
        # new key, so the next client sees the rotation and not a refused connection.
        local want i; want=$(cut -d' ' -f2 "$root/etc/ssh/ssh_host_ed25519_key.pub")
        for i in $(seq 50); do
          ssh-keyscan -t ed25519 -T 2 "$(cat "$h/address")" 2>/dev/null | grep -qF "$want" && break
          sleep 0.1
        done
      fi
      if [[ "${1:-}" == "--update-known-hosts" ]]; then
        cut -d' ' -f1,2 "$root/etc/ssh/ssh_host_ed25519_key.pub" >"$h/known_key"
        lock_lab; write_lab_files; flock -u 9
        log "$name has a new host key; known_hosts updated"
      else
        log "$name has a new host key; known_hosts NOT updated (strict clients refuse it)"
      fi ;;
    sudo-password)
      local pw="${1:-}"
      [[ "$pw" == - ]] && IFS= read -r pw
      [[ -n "$pw" ]] || die "usage: sudo-password HOST PASSWORD (or - to read it from stdin)"
      printf '%s:%s\n' "$LAB_USER" "$pw" | host_exec "$name" chpasswd
      host_exec "$name" rm -f /etc/sudoers.d/010_lab-nopasswd
      log "$name: sudo now asks $LAB_USER for a password" ;;
    sudo-nopasswd)
      host_exec "$name" sh -c "echo '$LAB_USER ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/010_lab-nopasswd && chmod 0440 /etc/sudoers.d/010_lab-nopasswd && passwd --lock $LAB_USER >/dev/null"
      log "$name: passwordless sudo again" ;;
    delay)
      local ms="${1:-}"
      [[ "$ms" =~ ^[0-9]+$ ]] || die "usage: delay HOST MS (added per direction)"
      kill_pidfile "$h/delay.pid"
      spawn_daemon "$CG_LAB/_delay-$name" "$h/delay.pid" "$h/delay.log" \
        nsenter --net="/run/netns/$(host_ns "$name")" /usr/bin/python3 "$LABDIR/delay-proxy.py" \
        --listen 0.0.0.0:2222 --target 127.0.0.1:22 --delay-ms "$ms"
      local i
      for i in $(seq 100); do
        nsenter --net="/run/netns/$(host_ns "$name")" ss -Htln 'sport = :2222' | grep -q . && break
        sleep 0.05
      done
      nft_in_host "$name" delete table ip labdelay 2>/dev/null || true
      nft_in_host "$name" -f - <<NFT
table ip labdelay {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "eth0" tcp dport 22 redirect to :2222
  }
}
NFT
      echo "$ms" >"$h/delay_ms"
      log "$name: +$ms ms each way on port 22" ;;
    undelay)
      nft_in_host "$name" delete table ip labdelay 2>/dev/null || true
      kill_pidfile "$h/delay.pid"
      rmdir "$CG_LAB/_delay-$name" 2>/dev/null || true
      rm -f "$h/delay_ms"
      log "$name: no delay" ;;
    pi-memory)
      # Takes effect at the host's next boot, as a kernel's behaviour would (see host-init.sh).
      case "${1:-}" in
        off) touch "$h/pi_memory_off"; log "$name: memory controller stays off from the next boot" ;;
        on) rm -f "$h/pi_memory_off"; log "$name: memory controller follows cmdline.txt from the next boot" ;;
        *) die "pi-memory HOST on|off" ;;
      esac ;;
    mirror-cut)
      nft_in_host "$name" delete table ip labmirror 2>/dev/null || true
      nft_in_host "$name" -f - <<NFT
table ip labmirror {
  chain output {
    type filter hook output priority filter; policy accept;
    ip daddr $BRIDGE_ADDR tcp dport $MIRROR_PORT reject with icmp type host-unreachable
  }
}
NFT
      touch "$h/mirror_cut"
      log "$name cannot reach the mirror" ;;
    mirror-restore)
      nft_in_host "$name" delete table ip labmirror 2>/dev/null || true
      rm -f "$h/mirror_cut"
      log "$name can reach the mirror" ;;
    k3s-fault)
      local root; root=$(host_root "$name")
      local what="${1:-}"
      [[ -n "$what" ]] || die "usage: k3s-fault HOST KNOB [VALUE] | k3s-fault HOST --clear [KNOB]"
      if [[ "$what" == --clear ]]; then
        if [[ -n "${2:-}" ]]; then rm -f "$root/etc/k3s-sim/faults/$2"; else rm -rf "$root/etc/k3s-sim/faults"; fi
        log "$name: k3s faults cleared"
      else
        [[ "$what" =~ ^[a-z0-9-]+$ ]] || die "bad knob name '$what'"
        mkdir -p "$root/etc/k3s-sim/faults"
        printf '%s' "${2:-}" >"$root/etc/k3s-sim/faults/$what"
        log "$name: k3s fault $what${2:+=$2}"
      fi ;;
    *) die "unknown knob $knob" ;;
  esac
}
