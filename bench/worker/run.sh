#!/usr/bin/env bash
# Worker benchmark: TTFT of a 2,048-token prompt, disaggregated (prefill worker + decode worker,
# layer-wise KV push) vs aggregated (one worker), as a ratio measured in the same run.
# Usage: bench/worker/run.sh BUILD_DIR [worker_bench flags]
set -euo pipefail
build="${1:?usage: bench/worker/run.sh BUILD_DIR}"
"$build/bench/worker/worker_bench" --tandem "$build/tandem" --prompt 2048 "${@:2}"
