#!/usr/bin/env bash
# Copy charts/library/values.schema.json into every chart that depends on the library.
# Helm validates a chart's values only against that chart's own values.schema.json and does not resolve
# relative $refs (they resolve against file:///), so each consumer carries a byte-identical copy;
# tests/charts/test_charts.py fails when a copy is missing or stale.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
schema="$root/charts/library/values.schema.json"
while IFS= read -r chart_yaml; do
  dir="$(dirname "$chart_yaml")"
  [ "$dir" = "$root/charts/library" ] && continue
  # Test fixtures opt in by having a copy (the can-fail fixture deliberately has none).
  case "$dir" in "$root/tests/"*) [ -f "$dir/values.schema.json" ] || continue ;; esac
  if grep -Eq '^[[:space:]]*-?[[:space:]]*name:[[:space:]]*library[[:space:]]*$' "$chart_yaml"; then
    if ! cmp -s "$schema" "$dir/values.schema.json"; then
      cp "$schema" "$dir/values.schema.json"
      echo "updated ${dir#"$root"/}/values.schema.json"
    fi
  fi
done < <(find "$root/charts" "$root/gitops" "$root/tests/charts/fixtures" -name Chart.yaml -not -path '*/charts/*/charts/*' 2>/dev/null | sort)
