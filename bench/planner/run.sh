#!/usr/bin/env bash
# Planner and latency-model benchmarks: cost of a model query, a capacity search, a planner
# decision and a predictor update, each as a ratio to an inline linear formula timed in the same run.
# Usage: bench/planner/run.sh BUILD_DIR [--quick]
set -euo pipefail
build="${1:?usage: bench/planner/run.sh BUILD_DIR [--quick]}"
"$build/bench/planner/planner_bench" "${@:2}"
