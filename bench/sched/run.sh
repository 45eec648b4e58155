#!/usr/bin/env bash
# Placement-core benchmarks: a 1,000-pod hierarchical gang on 10,000 nodes, and a stream of
# 100,000 small gangs on 5,000 nodes, each against a pod-by-pod baseline measured in the same run.
# Usage: bench/sched/run.sh BUILD_DIR [--quick]
set -euo pipefail
build="${1:?usage: bench/sched/run.sh BUILD_DIR [--quick]}"
"$build/bench/sched/sched_bench" "${@:2}"
