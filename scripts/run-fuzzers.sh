#!/usr/bin/env bash
# Runs every libFuzzer binary (*_fuzzer) of a fuzz build for a bounded time, starting from its
# seed corpus in tests/fuzz/<name>/, JOBS fuzzers at a time (default: the CPU count). New inputs
# go to a scratch corpus, never into the tree.
# Usage: scripts/run-fuzzers.sh FUZZ_BUILD_DIR SECONDS_EACH [JOBS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:?usage: run-fuzzers.sh FUZZ_BUILD_DIR SECONDS_EACH [JOBS]}" && pwd)"
seconds="${2:-15}"
jobs="${3:-$(nproc)}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mapfile -t fuzzers < <(find "$build" -type f -name '*_fuzzer' -perm -u+x | sort)
if [[ ${#fuzzers[@]} -eq 0 ]]; then
  echo "run-fuzzers: no fuzzers built in $build" >&2
  exit 1
fi

fuzz_one() {  # fuzz_one FUZZER: exit status 0 when it ran clean
  local fuzzer="$1" name
  name="$(basename "$fuzzer")"
  mkdir -p "$scratch/$name"
  local seeds=()
  [[ -d "$root/tests/fuzz/$name" ]] && seeds=("$root/tests/fuzz/$name")
  (cd "$scratch" && "$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
     -print_final_stats=1 "$scratch/$name" "${seeds[@]}" >"$scratch/$name.log" 2>&1)
}

declare -A running=()  # pid -> fuzzer
failed=""
report() {  # report PID STATUS
  local fuzzer="${running[$1]}" name
  name="$(basename "$fuzzer")"
  unset "running[$1]"
  if [[ "$2" != 0 ]]; then
    tail -n 60 "$scratch/$name.log" >&2
    echo "fuzz: $name found a failure (reproducer in the log above)" >&2
    failed="$failed $name"
  else
    echo "fuzz: $name $(grep -E '^stat::number_of_executed_units' "$scratch/$name.log" || true)"
  fi
}
reap_one() {  # waits for one running fuzzer and reports it
  local done_pid status
  set +e
  wait -n -p done_pid "${!running[@]}"
  status=$?
  set -e
  report "$done_pid" "$status"
}
for fuzzer in "${fuzzers[@]}"; do
  while [[ ${#running[@]} -ge $jobs ]]; do reap_one; done
  echo "fuzz: $(basename "$fuzzer") for ${seconds}s"
  fuzz_one "$fuzzer" &
  running[$!]="$fuzzer"
done
while [[ ${#running[@]} -gt 0 ]]; do reap_one; done
[[ -z "$failed" ]] || { echo "fuzz: failures in:$failed" >&2; exit 1; }
