#!/usr/bin/env bash
# Model loading throughput: LoadModel + reading every tensor vs `cat FILE > /dev/null` on the
# same ~1.2 GB GGUF file in the same run (page cache warm), plus the dummy-model write speed.
# Usage: bench/model/run.sh BUILD_DIR [--repeats N]
set -euo pipefail
build="$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)"
shift
bench="$build/bench/model/model_load_bench"
[[ -x "$bench" ]] || { echo "model bench: build the model_load_bench target in $build first" >&2; exit 1; }
"$bench" "$@"
