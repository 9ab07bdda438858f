# shellcheck shell=sh
# Add the memory cgroup flags to a Raspberry Pi's cmdline.txt and reboot it, with sudo
# (k3s/remote.rs, pi_cgroup_script). Given: f (the cmdline file).
: "${f:?}"
set -eu
[ -e "$f.edgeops-orig" ] || cp -p "$f" "$f.edgeops-orig"
line=$(head -n 1 "$f")
for w in cgroup_memory=1 cgroup_enable=memory; do
  case " $line " in *" $w "*) ;; *) line="$line $w" ;; esac
done
tmp=$(mktemp "$f.XXXXXX")
printf '%s\n' "$line" >"$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$f"
sync
echo "edgeops: $f: $line"
nohup sh -c 'sleep 1; systemctl reboot || reboot' >/dev/null 2>&1 &
