#!/usr/bin/env bash
# Installs restic 0.18 (Debian 13 "trixie" package, pinned and sha256-checked) as .cache/bin/restic.
# Debian 12 ships restic 0.14, which lacks the exit codes the backup runner classifies (3, 10, 11, 12: restic
# >= 0.17). The .deb is fetched with apt-get from the Debian mirror this machine already uses, through a private
# apt configuration under .cache (the system's sources and package state are not touched), verified against the
# Debian archive keyring and the pinned sha256, and only unpacked (restic is one binary, linked against libc 2.34+).
# Idempotent: does nothing when the pinned version is already there.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=0.18.0-1+b4
SHA256=4888fb20b272a28b84ac39171b7d7f0d9a58c2aeae51ec28e54684648d66e12c
dest="$root/.cache/tools/restic-$VERSION"
if [ -x "$dest/restic" ]; then
  mkdir -p "$root/.cache/bin" && ln -sf "$dest/restic" "$root/.cache/bin/restic"
  exit 0
fi
# The mirror the system already uses for Debian's main archive (the first deb URI naming a /debian path).
mirror=$(apt-get indextargets --format '$(URI)' 'Created-By: Packages' 2>/dev/null |
  sed -n 's#^\(.*/debian\)/dists/.*#\1#p' | head -n1)
[ -n "$mirror" ] || { echo "ensure-restic: no Debian mirror in this machine's apt sources" >&2; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || { echo "ensure-restic: $keyring missing: apt-get install debian-archive-keyring" >&2; exit 1; }
apt="$root/.cache/apt-trixie"
mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/etc"
echo "deb [signed-by=$keyring] $mirror trixie main" >"$apt/etc/sources.list"
opts=(-o "Dir::Etc::SourceList=$apt/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt" -o "Dir::Cache::archives=$apt/archives"
  -o Dir::State::status=/dev/null -o APT::Sandbox::User=root -qq)
echo "ensure-restic: fetching restic $VERSION (Debian 13) with apt-get download" >&2
apt-get "${opts[@]}" update
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get "${opts[@]}" download "restic=$VERSION")
deb=$(ls "$work"/restic_*.deb)
echo "$SHA256  $deb" | sha256sum --check --quiet ||
  { echo "ensure-restic: sha256 mismatch for restic $VERSION; refusing to unpack" >&2; exit 1; }
dpkg-deb -x "$deb" "$work/x"
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
install -m 0755 "$work/x/usr/bin/restic" "$dest.tmp/restic"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
mkdir -p "$root/.cache/bin"
ln -sf "$dest/restic" "$root/.cache/bin/restic"
"$root/.cache/bin/restic" version >&2
