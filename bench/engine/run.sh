#!/usr/bin/env bash
# Engine benchmarks: decode and prefill speed against baselines measured in the same run
# (streaming-read bandwidth, OpenBLAS SGEMM peak), continuous batching at 32 sequences against
# batch 1, and peak RSS against weights + KV budget. One process per configuration.
#
#   bench/engine/run.sh BUILD_DIR [--quick | shapes...]
#
# Shapes default to "small qwen2.5-0.5b"; --quick runs "small" only. Each shape is written as a
# dummy GGUF model with `tandem model create` into a temporary folder (deleted afterwards); where
# that command is not available, random weights of the same shape are built in memory.
set -euo pipefail
build_dir=${1:?usage: run.sh BUILD_DIR [shapes...]}
shift || true
shapes=()
for arg in "$@"; do
  if [[ "$arg" == --quick ]]; then shapes=(small); else shapes+=("$arg"); fi
done
[[ ${#shapes[@]} -eq 0 ]] && shapes=(small qwen2.5-0.5b)
bench="$build_dir/bench/engine/engine_bench"
[[ -x "$bench" ]] || { echo "run.sh: $bench not built (cmake --build $build_dir --target engine_bench)" >&2; exit 1; }

results=$(mktemp)
models=$(mktemp -d)
trap 'rm -rf "$results" "$models"' EXIT
for shape in "${shapes[@]}"; do
  for dtype in bf16 q8_0; do
    source_args=(--shape "$shape" --dtype "$dtype")
    file="$models/$shape-$dtype.gguf"
    if "$build_dir/tandem" model create --preset "$shape" --dtype "$dtype" --seed 1 \
         --out "$file" > /dev/null 2>&1 && [[ -f "$file" ]]; then
      source_args=(--shape "$shape" --model "$file")
      # The file's dirty pages are written back now, not by a kernel thread during the runs
      # (a 1 GB writeback took a core and cut a 2-thread decode to half its speed).
      sync "$file"
    fi
    for threads in 1 2; do
      echo "engine_bench ${source_args[*]} --threads $threads" >&2
      "$bench" "${source_args[@]}" --threads "$threads" >> "$results"
    done
    rm -f "$file"
  done
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("| model | source | dtype | KV | threads | read GB/s (min-max) | decode tok/s | roofline tok/s "
      "| decode ratio, median of windows (target >= 0.70) | windows min-max "
      "| prefill-512 tok/s | GEMM peak GFLOP/s | prefill GFLOP/s | prefill ratio (target >= 0.50) "
      "| batch-1 tok/s | 32-seq tok/s | batching x, median (target >= 4) | per round "
      "| peak RSS MiB | startup RSS MiB | weights+KV MiB | RSS ratio (target <= 1.10) | ratio above startup |")
print("|" + "---|" * 23)
for r in rows:
    mib = 1 << 20
    rounds = ", ".join(f"{x:.2f}" for x in r["batching_speedups"])
    print(f"| {r['model']} | {r['source']} | {r['dtype']} | {r['kv_dtype']} | {r['threads']} "
          f"| {r['read_bandwidth_gbs']:.1f} ({r['read_bandwidth_min_gbs']:.1f}-{r['read_bandwidth_max_gbs']:.1f}) "
          f"| {r['decode_tokens_per_s']:.1f} | {r['decode_roofline_tokens_per_s']:.1f} | {r['decode_roofline_ratio']:.2f} "
          f"| {r['decode_roofline_ratio_min']:.2f}-{r['decode_roofline_ratio_max']:.2f} "
          f"| {r['prefill_512_tokens_per_s']:.0f} | {r['gemm_peak_gflops']:.0f} | {r['prefill_gflops']:.0f} | {r['prefill_peak_ratio']:.2f} "
          f"| {r['batch1_decode_tokens_per_s']:.1f} | {r['batched_decode_tokens_per_s']:.1f} | {r['batching_speedup']:.2f} | {rounds} "
          f"| {r['peak_rss_bytes'] / mib:.0f} | {r['startup_rss_bytes'] / mib:.0f} "
          f"| {(r['weight_bytes'] + r['kv_budget_bytes']) / mib:.0f} | {r['rss_ratio']:.2f} | {r['rss_ratio_above_startup']:.2f} |")
PY
