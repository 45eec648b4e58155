#!/usr/bin/env bash
# Router benchmarks: routing decision latency with 1,000,000 indexed blocks over 64 workers and
# KV event ingestion rate on one core (each against a raw hash-table baseline measured in the
# same run), then the latency the router adds to a request against calling the worker directly.
# Usage: bench/router/run.sh BUILD_DIR [--quick]
set -euo pipefail
build="${1:?usage: bench/router/run.sh BUILD_DIR [--quick]}"
"$build/bench/router/router_bench" "${@:2}"
"$build/bench/router/router_latency_bench" "${@:2}"
