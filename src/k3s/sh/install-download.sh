# shellcheck shell=sh
# Download the k3s installer and run it (install.rs, InstallSpec::install_script, when the
# installer is not uploaded). Given: url (where the installer is), and the function run_installer
# (`env <the spec's environment> sh "$1"`: runs the installer file named by its argument). The
# download goes to a temporary file, removed on exit; a failed download fails the script before
# anything runs.
: "${url:?}"
set -eu
installer=$(mktemp)
trap 'rm -f "$installer"' EXIT
if command -v curl >/dev/null 2>&1; then
  curl -sfL --retry 3 -o "$installer" "$url"
elif command -v wget >/dev/null 2>&1; then
  wget -qO "$installer" "$url"
else
  echo 'edgeops: neither curl nor wget is installed; cannot download the k3s installer' >&2
  exit 127
fi
run_installer "$installer"
