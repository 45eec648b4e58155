#!/usr/bin/env bash
# Simulator speed: simulated requests per wall-clock second on one core for 1,000-GPU clusters
# on the chat workload, with the routing policy's own cost per request (DecideRoute over the same
# instances, timed alone in the same run) as the baseline ratio.
# Usage: bench/sim/run.sh BUILD_DIR [--quick]
set -euo pipefail
build="${1:?usage: bench/sim/run.sh BUILD_DIR [--quick]}"
# One core: the simulator is single-threaded; pin it so the figure is per core.
exec taskset -c 0 "$build/bench/sim/sim_bench" "${@:2}"
