#!/usr/bin/env bash
# KV transfer benchmarks: shared memory vs memcpy, TCP vs a raw socket pair, one-block latency.
# Usage: bench/kv/run.sh BUILD_DIR
set -euo pipefail
build="${1:?usage: bench/kv/run.sh BUILD_DIR}"
"$build/bench/kv/kv_bench" "${@:2}"
