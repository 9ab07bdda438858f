# shellcheck shell=sh
# The reset survey, with sudo (k3s/uninstall.rs, survey_script), after reset-common.sh: every
# trace, and the installed k3s version (from edgeops's stamp when it still matches the binary,
# else `k3s --version`). Given: stamp_file.
: "${stamp_file:?}" "${dirs?}"
traces
for d in $dirs; do
  [ -x "$d/k3s" ] || continue
  v=
  if [ -r "$stamp_file" ] && read -r sv ss sm <"$stamp_file" && [ "$(stat -c '%s %Y' "$d/k3s")" = "$ss $sm" ]; then v=$sv; fi
  [ -n "$v" ] || v=$("$d/k3s" --version 2>/dev/null | awk '{print $3; exit}')
  echo "version=$v"
  break
done
