#!/usr/bin/env bash
# Installs the named Debian packages when any is missing. Needs root (or passwordless sudo) the first time.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "ensure-debs: these Debian packages are needed: ${missing[*]}" >&2
  echo "ensure-debs: run as root once, or install them: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "ensure-debs: installing ${missing[*]}" >&2
stamp=/var/lib/apt/periodic/homelab-apt-updated
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +360 2>/dev/null)" ]; then
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=900 update -qq
  "${sudo[@]}" mkdir -p "$(dirname "$stamp")" && "${sudo[@]}" touch "$stamp"
fi
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
