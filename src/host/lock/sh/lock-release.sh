# shellcheck shell=sh
# Remove the `up` lock only if this run holds it (host/lock/file.rs, lock_release_script). Given: f (the
# lock file), pat (text only this run's holder line contains).
: "${f:?}" "${pat:?}"
if read -r _ holder <"$f" 2>/dev/null; then
  case "$holder" in *"$pat"*) rm -f "$f" ;; esac
fi
true
