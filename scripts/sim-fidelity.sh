#!/usr/bin/env bash
# Simulator fidelity: does `tandem sim`, fed this machine's measured latency profile, predict what
# the live stack measures? Steps:
#   1. profile the engine (`tandem profile`) on the demo model with the workers' engine options;
#   2. serve the same model with `tandem up` (router + 1 prefill + 1 decode worker);
#   3. calibrate the serving path: a probe workload (other requests, the measured load) through
#      the live stack: the router's prefill span against the profile gives a factor for the
#      profile's prefill points (two workers on one host slow each other; two GPUs do not); the
#      client's TTFT against the router's queue and prefill spans of the same requests gives the
#      first token's way outside the prefill (HTTP hops, routing, KV completion, the decode
#      worker's first step); the probe's streamed gaps against the same probe simulated from the
#      profile give the per-token work outside the forward pass and the decode worker joining
#      the imported KV. These become the scenario's `serving` overheads;
#   4. measure: a fixed, seeded `tandem bench` workload at moderate load (other requests and
#      lengths than the probe);
#   5. profile again and merge both profiles (repeated points are averaged), so drift of the
#      machine during the run weighs on both sides alike;
#   6. simulate the measured workload and compare TTFT p50 and ITL p50.
# The comparison runs --repeat times (3 by default); exit 0 when the median error of TTFT p50 and
# of ITL p50 are both within the tolerance (10% by default), 1 otherwise or when a step fails.
#
# ITL p50 is the median gap between streamed tokens as the client sees them (`tandem bench`'s ITL);
# TPOT p50 (each request's mean gap) is printed too. Both need a client that sleeps between
# arrivals: a client spinning a core on a 2-core host makes the live processes slow and their
# streamed tokens arrive in bursts.
#
# Usage: scripts/sim-fidelity.sh [BUILD_DIR] [--tolerance 0.10] [--repeat N] [--keep DIR] [--from DIR]
#   --repeat N  run the whole comparison N times (default 3) and gate the median of each error:
#               on a shared or virtual host one run's speed drifts by 10-30% within minutes
#   --keep DIR  keep the measurements, scenarios and logs in DIR (one folder per repeat)
#   --from DIR  no measurement: simulate and compare again from runs kept with --keep
# Takes about three minutes per repeat. Not part of `make test`: it is a measurement.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
export SCRIPTS="$repo/scripts"  # router_spans.py, for the Python steps below
build="$repo/build"
if [[ $# -gt 0 && "$1" != --* ]]; then build="$1"; shift; fi
tolerance=0.10
repeat=3
keep=""
from=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tolerance) tolerance="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --one) repeat=0; shift ;;  # internal: one comparison, in --keep DIR
    --keep) keep="$2"; shift 2 ;;
    --from) from="$2"; keep="$2"; shift 2 ;;
    *) echo "sim-fidelity: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
tandem="$(cd "$build" 2>/dev/null && pwd)/tandem"
[[ -x "$tandem" ]] || { echo "sim-fidelity: no tandem binary in $build (build first)" >&2; exit 1; }
[[ "$repeat" =~ ^[0-9]+$ ]] || { echo "sim-fidelity: --repeat wants a count" >&2; exit 2; }

if [[ $repeat -gt 0 ]]; then
  # The outer run: N comparisons, each in its own folder, then the median of each error.
  top="${keep:-$(mktemp -d)}"
  mkdir -p "$top"
  [[ -n "$keep" ]] || trap 'rm -rf "$top"' EXIT
  for ((i = 1; i <= repeat; i++)); do
    echo "=== comparison $i of $repeat"
    args=("$build" --one --tolerance "$tolerance")
    if [[ -n "$from" ]]; then args+=(--from "$top/$i"); else args+=(--keep "$top/$i"); fi
    rm -f "$top/$i/result.json"  # a kept folder's old result must not stand in for a failed step
    "$0" "${args[@]}" || [[ -f "$top/$i/result.json" ]] ||
      { echo "sim-fidelity: comparison $i failed" >&2; exit 1; }
  done
  python3 - "$top" "$repeat" "$tolerance" <<'PY'
import json, statistics, sys
top, n, tolerance = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
runs = [json.load(open(f"{top}/{i}/result.json")) for i in range(1, n + 1)]
print(f"=== {n} comparisons: error per run, and the median")
ok = True
for name in runs[0]:
    errors = [r[name]["error"] for r in runs]
    median = statistics.median(errors)
    gate = runs[0][name]["gated"]
    if gate:
        ok = ok and abs(median) <= tolerance
    print(f"{name:<10} " + " ".join(f"{100 * e:+7.1f}%" for e in errors) +
          f"   median {100 * median:+6.1f}%{'' if gate else '  (not gated)'}")
print("PASS" if ok else f"FAIL: a median error exceeds {100 * tolerance:.0f}%")
sys.exit(0 if ok else 1)
PY
  exit
fi

work="${keep:-$(mktemp -d)}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
run_dir="$work/run"
up=0
cleanup() {
  if [[ $up == 1 ]]; then "$tandem" down --run-dir "$run_dir" >/dev/null 2>&1 || true; fi
  if [[ -z "$keep" ]]; then rm -rf "$work"; fi
  return 0
}
trap cleanup EXIT

# The demo model `make run` serves.
model="$repo/models/demo.gguf"
if [[ ! -f "$model" ]]; then
  mkdir -p "$(dirname "$model")"
  "$tandem" model create --preset small --out "$model.tmp" >/dev/null
  mv "$model.tmp" "$model"
fi

# Engine options, the same on the workers, in the profile and in the scenario: one engine thread
# per worker (two workers share this machine), the worker defaults for the rest (block size 16,
# 512 tokens per step with chunked prefill, 256 MiB of KV).
threads=1
block_size=16
max_batch_tokens=512
kv_budget=$((256 << 20))
# The router's conditional disaggregation threshold of examples/local.yaml.
local_prefill_max=16

# The measured workload: chat-like lengths scaled to a CPU engine, Poisson arrivals.
seed=11
requests=100
rate=1.5
input="lognormal:128,0.3"
output="lognormal:32,0.3"
# The calibration probe: fixed lengths, other requests than the measured ones, at the measured
# load (on one host the two workers share memory bandwidth and the last-level cache, so a prefill
# runs slower while decode steps run beside it: the probe measures that at this operating point).
probe_seed=7
probe_requests=30
probe_rate=$rate
probe_input=128
probe_output=32

# The simulator models each worker as its own device. On a host with two or more CPUs the workers
# get one core each (prefill core 0, decode core 1), and the profile is measured on core 0, so
# neither worker's engine competes with the other's for a core; the router and the client float.
pin=()
if [[ $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then pin=(taskset -c 0); fi

profile() {
  "${pin[@]}" "$tandem" profile --model "$model" --threads "$threads" --repeats 3 --quiet \
    --prefill-tokens 16,32,64,128,192,256,384,512 --batch-sizes 1,2,4,8 \
    --contexts 64,160,320 --out "$1"
}

if [[ -z "$from" ]]; then
echo "== 1. profile the engine (threads $threads) [load: $(cut -d' ' -f1-3 /proc/loadavg)]"
profile "$work/profile-before.json"

echo "== 2. serve: router + prefill + decode (tandem up)"
cat >"$work/spec.yaml" <<YAML
apiVersion: tandem/v1
name: sim-fidelity
model: $model
roles:
  router:
    port: 8000
    args: ["--local-prefill-max-uncached-tokens", "$local_prefill_max", "--block-size", "$block_size"]
  prefill:
    replicas: 1
    startsAfter: [router]
    readyTimeoutSeconds: 120
    args: ["--threads", "$threads", "--block-size", "$block_size",
           "--max-batch-tokens", "$max_batch_tokens", "--kv-budget", "$kv_budget"]
  decode:
    replicas: 1
    startsAfter: [router]
    readyTimeoutSeconds: 120
    args: ["--threads", "$threads", "--block-size", "$block_size",
           "--max-batch-tokens", "$max_batch_tokens", "--kv-budget", "$kv_budget"]
YAML
up=1
"$tandem" up --detach --random-ports --drain-timeout 10 --run-dir "$run_dir" "$work/spec.yaml" >"$work/up.log" 2>&1 ||
  { cat "$work/up.log" >&2; echo "sim-fidelity: tandem up failed" >&2; exit 1; }
url="http://$("$tandem" status --run-dir "$run_dir" --json | python3 -c '
import json, sys
status = json.load(sys.stdin)
print(next(r for r in status["roles"] if r["name"] == "router")["instances"][0]["processes"][0]["address"])')"
if [[ ${#pin[@]} -gt 0 ]]; then
  "$tandem" status --run-dir "$run_dir" --json | python3 -c '
import json, sys
status = json.load(sys.stdin)
for role, core in (("prefill", 0), ("decode", 1)):
    r = next(r for r in status["roles"] if r["name"] == role)
    print(r["instances"][0]["processes"][0]["pid"], core)' |
    while read -r pid core; do taskset -a -p -c "$core" "$pid" >/dev/null; done
fi
served="$(curl -fsS "$url/v1/models" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])')"

bench() {  # bench OUT SEED REQUESTS RATE INPUT OUTPUT
  "$tandem" bench --url "$url" --model "$served" --endpoint completions --seed "$2" \
    --num-requests "$3" --rate "$4" --input-len "$5" --output-len "$6" \
    --percentiles 10,50,90 --json "$1" >"$1.txt"
}
# Warm-up, not recorded: other prompts than the measured ones, which must not hit the prefix
# cache (a warm-up with --warmup repeats the first measured requests).
bench "$work/warmup.json" 1 4 4 "$probe_input" "$probe_output"

echo "== 3. calibrate: $probe_requests requests of $probe_input + $probe_output tokens at $probe_rate req/s"
curl -fsS "$url/metrics" >"$work/router-metrics-probe-$probe_seed-start.txt"
bench "$work/probe-$probe_seed.json" "$probe_seed" "$probe_requests" "$probe_rate" "$probe_input" \
  "$probe_output"
curl -fsS "$url/metrics" >"$work/router-metrics-before.txt"
cp "$work/router-metrics-before.txt" "$work/router-metrics-probe-$probe_seed-end.txt"

echo "== 4. measure: $requests requests at $rate req/s, input $input, output $output, seed $seed [load: $(cut -d' ' -f1-3 /proc/loadavg)]"
bench "$work/bench.json" "$seed" "$requests" "$rate" "$input" "$output"
curl -fsS "$url/metrics" >"$work/router-metrics-after.txt"
echo "== 4b. calibrate again (the host drifts): the probe with seed $((probe_seed + 1))"
cp "$work/router-metrics-after.txt" "$work/router-metrics-probe-$((probe_seed + 1))-start.txt"
bench "$work/probe-$((probe_seed + 1)).json" "$((probe_seed + 1))" "$probe_requests" "$probe_rate" \
  "$probe_input" "$probe_output"
curl -fsS "$url/metrics" >"$work/router-metrics-probe-$((probe_seed + 1))-end.txt"
"$tandem" down --run-dir "$run_dir" >/dev/null
up=0

echo "== 5. profile again [load: $(cut -d' ' -f1-3 /proc/loadavg)]"
profile "$work/profile-after.json"
# The engine's profile (both runs merged), then the prefill points scaled by how much slower a
# prefill ran in the live stack during the probes (the router's `prefill` span: the prefill
# worker's queue, compute and answer) than the profile says for the probe's prompt.
python3 - "$work" "$probe_input" <<'PY'
import glob, json, os, sys
sys.path.insert(0, os.environ["SCRIPTS"])
from router_spans import mean_span_ms, spans
work, probe_input = sys.argv[1], int(sys.argv[2])
before, after = (json.load(open(f"{work}/profile-{p}.json")) for p in ("before", "after"))
before["prefill"] += after["prefill"]
before["decode"] += after["decode"]
json.dump(before, open(f"{work}/profile-engine.json", "w"), indent=1)

live = []
for start in sorted(glob.glob(f"{work}/router-metrics-probe-*-start.txt")):
    mean = mean_span_ms(spans(start), spans(start.replace("-start", "-end")), "prefill")
    if mean is not None:
        live.append(mean / 1e3)
points = [p["seconds"] for p in before["prefill"]
          if p["uncached_tokens"] == probe_input and p.get("cached_tokens", 0) == 0]
scale = 1.0
if live and points:
    scale = max(1.0, (sum(live) / len(live)) / (sum(points) / len(points)))
    print(f"live prefill in the probes {1e3 * sum(live) / len(live):.1f} ms, profiled "
          f"{1e3 * sum(points) / len(points):.1f} ms for {probe_input} tokens: prefill x {scale:.3f}")
for p in before["prefill"]:
    p["seconds"] *= scale
json.dump(before, open(f"{work}/profile.json", "w"), indent=1)
PY
fi

# The deployment above as a scenario: one node, one prefill and one decode instance, the
# router's routing parameters, the engines' step budget and KV capacity (the demo model has BF16
# weights, so the engines keep BF16 KV: 2 x 8 layers x 4 KV heads x 64 x 2 bytes per token).
scenario() {  # scenario FILE SEED REQUESTS RATE INPUT OUTPUT FIRST_TOKEN_MS TOKEN_MS JOIN_MS
  cat >"$1" <<YAML
name: sim-fidelity
seed: $2
cluster: {nodes: 1, gpus_per_node: 2, nodes_per_domain: 1}
profile: {path: profile.json, kv_bytes_per_element: 2,
          kv_capacity_tokens: $((kv_budget / (2 * 8 * 4 * 64 * 2)))}
instances:
  - {role: prefill, count: 1, max_batch_tokens: $max_batch_tokens, max_batch_sequences: 256}
  - {role: decode, count: 1, max_batch_tokens: $max_batch_tokens, max_batch_sequences: 256}
routing: {block_size: $block_size, local_prefill_max_uncached_tokens: $local_prefill_max}
workload: {rate: $4, input: "$5", output: "$6", requests: $3}
serving: {first_token_overhead_ms: $7, token_overhead_ms: $8, remote_join_ms: $9}
YAML
}

echo "== 6. simulate (tandem sim) and compare"
# Each probe gives the overheads against its own simulation; their mean is used.
calibrations=()
for live in "$work"/probe-*.json; do
  [[ "$live" == *-sim.json ]] && continue
  probe_run="${live%.json}"
  scenario "$probe_run.yaml" "${probe_run##*-}" "$probe_requests" "$probe_rate" "$probe_input" \
    "$probe_output" 0 0 0
  "$tandem" sim "$probe_run.yaml" --json "$probe_run-sim.json" >/dev/null
  calibrations+=("$live" "$probe_run-sim.json")
done
read -r first_token_ms token_ms join_ms < <(python3 - "$probe_output" "${calibrations[@]}" <<'PY'
import json, os, sys
sys.path.insert(0, os.environ["SCRIPTS"])
from router_spans import mean_span_ms, spans
gaps = int(sys.argv[1]) - 1

found = []
for live_path, sim_path in zip(sys.argv[2::2], sys.argv[3::2]):
    live = json.load(open(live_path))
    sim = json.load(open(sim_path))["variants"][0]["result"]
    # Per decoded token: the gap between streamed tokens beyond the profile's step. Per request:
    # what is left of the per-request mean gap (TPOT) is one longer first gap, the decode worker
    # joining the remote prefill's KV.
    token = max(0.0, live["median_itl_ms"] - sim["itl"]["p50_ms"])
    join = max(0.0, (live["median_tpot_ms"] - sim["tpot"]["p50_ms"] - token) * gaps)
    # Per request again: the first token's way outside the prefill, from the router's own
    # timing of the same requests (mean TTFT the client saw minus the mean router queue and
    # prefill spans): HTTP hops, KV completion, the decode worker's first step, the trip back.
    # A mean over the same requests on both sides, so the probe's drift in prefill speed (which
    # the prefill scale carries) does not leak into it.
    metrics = live_path.rsplit("/", 1)[0] + "/router-metrics-" + \
        live_path.rsplit("/", 1)[1][:-len(".json")]
    start, end = spans(metrics + "-start.txt"), spans(metrics + "-end.txt")
    first = max(0.0, live["mean_ttft_ms"] - (mean_span_ms(start, end, "queue") or 0) -
                (mean_span_ms(start, end, "prefill") or 0))
    print(f"probe {live_path.rsplit('/', 1)[-1]}: first token {first:.1f} ms, per token "
          f"{token:.2f} ms, join {join:.1f} ms", file=sys.stderr)
    found.append((first, token, join))
print(" ".join(f"{sum(v) / len(v):.3f}" for v in zip(*found)))
PY
)
echo "serving overheads (mean of the probes): first token +$first_token_ms ms, per decoded token" \
  "+$token_ms ms, remote prefill join +$join_ms ms"
scenario "$work/scenario.yaml" "$seed" "$requests" "$rate" "$input" "$output" \
  "$first_token_ms" "$token_ms" "$join_ms"
"$tandem" sim "$work/scenario.yaml" --json "$work/sim.json" >/dev/null

python3 - "$work" "$tolerance" <<'PY'
import json, os, sys
sys.path.insert(0, os.environ["SCRIPTS"])
from router_spans import mean_span_ms, spans
work, tolerance = sys.argv[1], float(sys.argv[2])
bench = json.load(open(f"{work}/bench.json"))
sim = json.load(open(f"{work}/sim.json"))["variants"][0]["result"]

before, after = spans(f"{work}/router-metrics-before.txt"), spans(f"{work}/router-metrics-after.txt")
parts = []
for name in ("queue", "prefill", "kv_transfer", "first_decode"):
    mean = mean_span_ms(before, after, name)
    if mean is not None:
        parts.append(f"{name} {mean:.1f}")
if parts:
    print("live TTFT as the router sees it (mean ms): " + ", ".join(parts))
print(f"live: {bench['completed']} of {bench['num_prompts'] if 'num_prompts' in bench else '?'} "
      f"requests; simulated: {sim['completed']} of {sim['requests']} "
      f"({sim['disaggregated']} disaggregated, {sim['local_prefill']} prefilled on decode)")
rows = [("TTFT p50", bench["median_ttft_ms"], sim["ttft"]["p50_ms"], True),
        ("ITL p50", bench["median_itl_ms"], sim["itl"]["p50_ms"], True),
        ("TPOT p50", bench["median_tpot_ms"], sim["tpot"]["p50_ms"], False),
        ("TTFT p90", bench["p90_ttft_ms"], sim["ttft"]["p90_ms"], False),
        ("E2E p50", bench["median_e2el_ms"], sim["e2e"]["p50_ms"], False)]
ok = True
print(f"{'metric':<22} {'measured ms':>12} {'simulated ms':>13} {'error':>8}")
for name, measured, simulated, gate in rows:
    error = (simulated - measured) / measured if measured > 0 else float("inf")
    if gate:
        ok = ok and abs(error) <= tolerance
    print(f"{name:<22} {measured:12.2f} {simulated:13.2f} {100 * error:+7.1f}%"
          f"{'' if gate else '  (not gated)'}")
json.dump({name.split()[0] + "_" + name.split()[1]: {"measured_ms": m, "simulated_ms": v,
            "error": (v - m) / m if m > 0 else float("inf"), "gated": g}
           for name, m, v, g in rows}, open(f"{work}/result.json", "w"), indent=1)
print("PASS" if ok else f"FAIL: an error exceeds {100 * tolerance:.0f}%")
sys.exit(0 if ok else 1)
PY
