#!/usr/bin/env bash
# Tokenizer encoding speed (MB/s) on a ~1 MB mixed text, against the JavaScript reference
# tokenizers (llama3-tokenizer-js, llama-tokenizer-js) timed in the same run.
# Usage: bench/tokenizer/run.sh BUILD_DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)"
bench="$build/bench/tokenizer/tokenizer_bench"
[[ -x "$bench" ]] || { echo "tokenizer bench: build the tokenizer_bench target in $build first" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
node "$root/tests/tokenizer/make_conformance_data.mjs" "$work/data" 10 >/dev/null
"$bench" --write-text "$work/text.txt"
js="$(node "$root/tests/tokenizer/make_conformance_data.mjs" --bench "$work/text.txt")"
"$bench" "$work/data" "$work/text.txt" | tee "$work/tandem.jsonl"
echo "JS reference (line by line): $js"
python3 - "$work/tandem.jsonl" "$js" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
js = json.loads(sys.argv[2])
ref = {"llama3": js["llama3-tokenizer-js"]["mb_per_s"], "llama2": js["llama-tokenizer-js"]["mb_per_s"]}
print("\n| tokenizer | MB/s | tokens | vs JS reference |")
print("|---|---:|---:|---:|")
for r in rows:
    key = "llama3" if "llama3" in r["name"] else "llama2" if "llama2" in r["name"] else None
    ratio = f'{r["mb_per_s"] / ref[key]:.1f}x' if key and "pre-tokenizer" not in r["name"] else "-"
    print(f'| {r["name"]} | {r["mb_per_s"]:.1f} | {r["tokens"]} | {ratio} |')
for name, v in js.items():
    print(f'| {name} (JS, line by line) | {v["mb_per_s"]:.1f} | {v["tokens"]} | 1.0x |')
PY
