# shellcheck shell=sh
# Add the key to authorized_keys if missing (as the login user) and say whether sudo works
# without a password (bootstrap.rs, key_script). Given: key (its base64), line (the whole line).
: "${key:?}" "${line:?}"
set -e
umask 077
f="$HOME/.ssh/authorized_keys"
mkdir -p "$HOME/.ssh"
chmod 700 "$HOME/.ssh"
if [ -f "$f" ] && grep -qF -- "$key" "$f"; then echo key:present; else
  if [ -s "$f" ] && [ -n "$(tail -c1 "$f")" ]; then echo >> "$f"; fi
  printf '%s\n' "$line" >> "$f"
  chmod 600 "$f"
  echo key:added
fi
if sudo -n true 2>/dev/null; then echo sudo:passwordless; else echo sudo:password; fi
