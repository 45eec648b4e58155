#!/usr/bin/env bash
# Runs every component's benchmarks: bench/<component>/run.sh BUILD_DIR [--quick].
# Usage: bench/run-all.sh BUILD_DIR [COMPONENT...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(cd "${1:?usage: bench/run-all.sh BUILD_DIR [COMPONENT...]}" && pwd)"
shift
components=("$@")
if [[ ${#components[@]} -eq 0 ]]; then
  for dir in "$here"/*/; do
    [[ -x "$dir/run.sh" ]] && components+=("$(basename "$dir")")
  done
fi
status=0
for c in "${components[@]}"; do
  echo "=== bench: $c ==="
  if ! "$here/$c/run.sh" "$build"; then
    echo "bench: $c failed" >&2
    status=1
  fi
done
exit $status
