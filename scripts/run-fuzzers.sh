#!/usr/bin/env bash
# Runs every libFuzzer binary (*_fuzzer) of a fuzz build for a bounded time, starting from its
# seed corpus in tests/fuzz/<name>/. New inputs go to a scratch corpus, never into the tree.
# Usage: scripts/run-fuzzers.sh FUZZ_BUILD_DIR SECONDS_EACH
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:?usage: run-fuzzers.sh FUZZ_BUILD_DIR SECONDS_EACH}" && pwd)"
seconds="${2:-15}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mapfile -t fuzzers < <(find "$build" -type f -name '*_fuzzer' -perm -u+x | sort)
if [[ ${#fuzzers[@]} -eq 0 ]]; then
  echo "run-fuzzers: no fuzzers built in $build" >&2
  exit 1
fi
for fuzzer in "${fuzzers[@]}"; do
  name="$(basename "$fuzzer")"
  mkdir -p "$scratch/$name"
  seeds=()
  [[ -d "$root/tests/fuzz/$name" ]] && seeds=("$root/tests/fuzz/$name")
  echo "fuzz: $name for ${seconds}s"
  if ! (cd "$scratch" && "$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
          -print_final_stats=1 "$scratch/$name" "${seeds[@]}" >"$scratch/$name.log" 2>&1); then
    tail -n 60 "$scratch/$name.log" >&2
    echo "fuzz: $name found a failure (reproducer in the log above)" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units' "$scratch/$name.log" || true
done
