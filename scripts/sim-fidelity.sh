#!/usr/bin/env bash
# Simulator fidelity: measure this machine's engine with `tandem profile`, serve a deployment
# with `tandem up`, load it with `tandem bench`, then simulate the same deployment and workload
# with `tandem sim` from the measured profile, and compare TTFT p50 and ITL p50. Passes when both
# are within the tolerance (10% by default). Repeatable: fixed seed, fixed workload.
#
# Usage: scripts/sim-fidelity.sh [BUILD_DIR] [--tolerance 0.10] [--keep DIR]
# Exit codes: 0 within tolerance, 1 outside it or a step failed, 77 the live stack's commands
# (profile, up, bench) are not in this build, so nothing could be compared.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$repo/build}"
[[ $# -gt 0 ]] && shift
tolerance=0.10
keep=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tolerance) tolerance="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    *) echo "sim-fidelity: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
tandem="$build/tandem"
[[ -x "$tandem" ]] || { echo "sim-fidelity: no tandem binary at $tandem (build first)" >&2; exit 1; }

# The comparison needs the live serving stack.
missing=()
commands="$("$tandem" --help 2>/dev/null || true)"
for command in profile up bench; do
  grep -qE "^[[:space:]]+$command[[:space:]]" <<<"$commands" || missing+=("$command")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "sim-fidelity: skipped: this build has no 'tandem ${missing[*]}' (the live stack); nothing to compare" >&2
  exit 77
fi

work="${keep:-$(mktemp -d)}"
mkdir -p "$work"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  [[ -z "$keep" ]] && rm -rf "$work"
  return 0
}
trap cleanup EXIT

# The workload both sides run: chat-like lengths, scaled to a CPU engine, Poisson arrivals.
seed=11
requests=200
rate=2
input="lognormal:256,0.3"
output="lognormal:32,0.3"
spec="$repo/examples/local.yaml"

echo "== 1. profile the engine"
"$tandem" profile --spec "$spec" --out "$work/profile.json"

echo "== 2. serve $spec"
"$tandem" up "$spec" >"$work/up.log" 2>&1 &
server_pid=$!
url="http://127.0.0.1:8000"
for _ in $(seq 1 120); do
  curl -fsS "$url/health" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { echo "sim-fidelity: tandem up exited; see $work/up.log" >&2; exit 1; }
  sleep 1
done
curl -fsS "$url/health" >/dev/null || { echo "sim-fidelity: server not ready after 120 s" >&2; exit 1; }

echo "== 3. measure: tandem bench"
"$tandem" bench --url "$url" --seed "$seed" --num-requests "$requests" --rate "$rate" \
  --input "$input" --output "$output" --json "$work/bench.json"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""

echo "== 4. simulate the same deployment from the profile: tandem sim"
cat >"$work/scenario.yaml" <<YAML
name: fidelity-local
seed: $seed
cluster: {nodes: 1, gpus_per_node: 2, nodes_per_domain: 1,
          links: {same_node: {gigabytes_per_second: 5, latency_us: 50}}}
profile: {path: profile.json, kv_bytes_per_element: 4}
instances:
  - {role: prefill, count: 1, max_batch_tokens: 2048}
  - {role: decode, count: 1, max_batch_tokens: 2048}
routing: {local_prefill_max_uncached_tokens: 0}
workload: {rate: $rate, input: "$input", output: "$output", requests: $requests}
YAML
"$tandem" sim "$work/scenario.yaml" --json "$work/sim.json"

echo "== 5. compare"
python3 - "$work/bench.json" "$work/sim.json" "$tolerance" <<'PY'
import json, sys
bench = json.load(open(sys.argv[1]))
sim = json.load(open(sys.argv[2]))["variants"][0]["result"]
tolerance = float(sys.argv[3])
rows = [("TTFT p50", bench["median_ttft_ms"], sim["ttft"]["p50_ms"]),
        ("ITL p50", bench["median_itl_ms"], sim["itl"]["p50_ms"])]
ok = True
print(f"{'metric':<10} {'measured ms':>12} {'simulated ms':>13} {'error':>8}")
for name, measured, simulated in rows:
    error = abs(simulated - measured) / measured if measured > 0 else float("inf")
    ok = ok and error <= tolerance
    print(f"{name:<10} {measured:12.2f} {simulated:13.2f} {100 * error:7.1f}%")
print("PASS" if ok else f"FAIL: an error exceeds {100 * tolerance:.0f}%")
sys.exit(0 if ok else 1)
PY
