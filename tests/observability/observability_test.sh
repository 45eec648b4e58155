#!/usr/bin/env bash
# End-to-end observability of a local cluster (router + prefill + decode, started by `tandem up`):
#   1. `promtool check metrics` passes on every role's /metrics;
#   2. `tandem bench` drives traffic, and its request and token counts agree with the router's own
#      counters;
#   3. Debian's Prometheus scrapes every role from a generated config, and a TTFT quantile comes
#      back through the Prometheus HTTP API;
#   4. headless Chromium (playwright-core) loads /dashboard, the charts change while traffic flows,
#      and a screenshot is saved under ARTIFACTS.
# Usage: observability_test.sh TANDEM_BINARY ARTIFACTS_DIR
set -euo pipefail
tandem="${1:?usage: observability_test.sh TANDEM_BINARY ARTIFACTS_DIR}"
artifacts="${2:?usage: observability_test.sh TANDEM_BINARY ARTIFACTS_DIR}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
prom_pid=""
mkdir -p "$artifacts"

cleanup() {
  local rc=$?
  if [[ -n $prom_pid ]]; then kill "$prom_pid" 2>/dev/null || true; wait "$prom_pid" 2>/dev/null || true; fi
  "$tandem" down --run-dir "$work/run" --timeout 30 >/dev/null 2>&1 || true
  if [[ $rc != 0 ]]; then
    for log in "$work"/run/*/logs/*.log "$work/prometheus.log"; do
      [[ -f $log ]] && { echo "==> $log <=="; tail -n 20 "$log"; }
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "observability_test: FAIL: $*" >&2; exit 1; }
step() { echo "observability_test: $*"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

for tool in promtool prometheus chromium node python3 curl; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/install-deps.sh installs it)"
done

step "starting a cluster"
"$tandem" model create --preset tiny --out "$work/model.gguf" >/dev/null
cat >"$work/spec.yaml" <<SPEC
apiVersion: tandem/v1
name: observability
model: $work/model.gguf
roles:
  router:
    port: 8000
    args: ["--local-prefill-max-uncached-tokens", "16"]
  prefill:
    replicas: 1
    startsAfter: [router]
    readyTimeoutSeconds: 60
  decode:
    replicas: 1
    startsAfter: [router]
    readyTimeoutSeconds: 60
SPEC
"$tandem" up --detach --random-ports --run-dir "$work/run" "$work/spec.yaml" >"$work/up.log" ||
  { cat "$work/up.log"; fail "tandem up failed"; }
"$tandem" status --json --run-dir "$work/run" >"$work/status.json"
router="$(json '[p["address"] for r in d["roles"] if r["kind"]=="router" for i in r["instances"] for p in i["processes"]][0]' <"$work/status.json")"
mapfile -t targets < <(json '"\n".join(p["address"] for r in d["roles"] for i in r["instances"] for p in i["processes"])' <"$work/status.json")
[[ ${#targets[@]} == 3 ]] || fail "expected 3 processes, status lists ${#targets[@]}"
url="http://$router"
for _ in $(seq 1 100); do
  curl -sf "$url/v1/workers" | grep -q '"role":"decode".*"state":"ready"\|"state":"ready".*"role":"decode"' && break
  sleep 0.1
done

step "promtool check metrics on every role"
for target in "${targets[@]}"; do
  curl -sf "http://$target/metrics" >"$work/metrics.txt" || fail "GET http://$target/metrics"
  promtool check metrics <"$work/metrics.txt" >"$work/promtool.txt" 2>&1 ||
    { cat "$work/promtool.txt"; fail "promtool check metrics failed for $target"; }
done

step "starting Prometheus"
prom_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
{
  echo "global: {scrape_interval: 1s, evaluation_interval: 1s}"
  echo "scrape_configs:"
  echo "  - job_name: tandem"
  echo "    static_configs:"
  printf '      - targets: [%s]\n' "$(printf '"%s",' "${targets[@]}" | sed 's/,$//')"
} >"$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
prom_pid=$!
prom="http://127.0.0.1:$prom_port"
up_targets=0
for _ in $(seq 1 150); do
  up_targets="$(curl -sf "$prom/api/v1/query?query=sum(up)" 2>/dev/null | json 'd["data"]["result"][0]["value"][1] if d["data"]["result"] else 0' 2>/dev/null || echo 0)"
  [[ $up_targets == 3 ]] && break
  sleep 0.2
done
[[ $up_targets == 3 ]] || fail "Prometheus scrapes $up_targets of 3 targets"

step "tandem bench: 24 requests"
"$tandem" bench --url "$url" --model model --endpoint chat --num-requests 24 --concurrency 4 \
  --input-len 40 --output-len 12 --prefix-groups 2 --prefix-len 24 --seed 3 \
  --json "$work/bench.json" >"$work/bench.txt" 2>&1 || { cat "$work/bench.txt"; fail "tandem bench failed"; }
completed="$(json 'd["completed"]' <"$work/bench.json")"
failed="$(json 'd.get("failed", 0)' <"$work/bench.json")"
bench_out="$(json 'd["total_output_tokens"]' <"$work/bench.json")"
bench_in="$(json 'd["total_input_tokens"]' <"$work/bench.json")"
[[ $completed == 24 && $failed == 0 ]] || { cat "$work/bench.txt"; fail "bench: $completed completed, $failed failed"; }
curl -sf "$url/metrics" >"$work/router.txt"
metric() { awk -v name="$1" '$1 == name || index($1, name "{") == 1 { s += $2 } END { printf "%d", s }' "$work/router.txt"; }
router_ok="$(awk '/^tandem_router_requests_total\{/ && /outcome="ok"/ { s += $2 } END { printf "%d", s }' "$work/router.txt")"
router_out="$(metric tandem_router_generated_tokens_total)"
router_in="$(metric tandem_router_prompt_tokens_total)"
router_ttft="$(metric tandem_router_ttft_seconds_count)"
[[ $router_ok == 24 ]] || fail "router counted $router_ok ok requests, bench completed 24"
[[ $router_ttft == 24 ]] || fail "router observed $router_ttft TTFTs, expected 24"
[[ $router_out == "$bench_out" ]] || fail "router generated $router_out tokens, bench counted $bench_out"
[[ $router_in == "$bench_in" ]] || fail "router counted $router_in prompt tokens, bench $bench_in"
# Percentiles: the router's TTFT histogram (exponential buckets, factor 2) against the client's
# exact p50; the client's includes its own send and parse time, the router's starts at arrival.
python3 - "$work/router.txt" "$work/bench.json" <<'PY' || fail "router and bench TTFT p50 disagree"
import json, sys
buckets = []
for line in open(sys.argv[1]):
    if line.startswith("tandem_router_ttft_seconds_bucket{"):
        le = line.split('le="')[1].split('"')[0]
        buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
buckets.sort()
total = buckets[-1][1]
rank, lower_le, lower_count = 0.5 * total, 0.0, 0.0
for le, count in buckets:
    if count >= rank:
        router_p50 = lower_le + (le - lower_le) * (rank - lower_count) / max(count - lower_count, 1e-9)
        break
    lower_le, lower_count = le, count
bench_p50 = json.load(open(sys.argv[2]))["median_ttft_ms"] / 1000
ratio = bench_p50 / router_p50
print(f"observability_test: TTFT p50 bench {bench_p50 * 1000:.1f} ms, router histogram {router_p50 * 1000:.1f} ms")
# Millisecond-scale TTFTs on a loaded machine: allow the client a fixed 25 ms of its own on top.
sys.exit(0 if 0.5 <= ratio <= 2.5 or abs(bench_p50 - router_p50) < 0.025 else 1)
PY
disagg="$(awk '/^tandem_router_routing_decisions_total\{decision="disaggregated"\}/ { print int($2) }' "$work/router.txt")"
[[ ${disagg:-0} -gt 0 ]] || fail "no request was disaggregated"

step "a TTFT quantile through the Prometheus HTTP API"
query='histogram_quantile(0.5,sum(rate(tandem_router_ttft_seconds_bucket[1m]))by(le))'
ttft=""
for _ in $(seq 1 100); do
  ttft="$(curl -sf --get "$prom/api/v1/query" --data-urlencode "query=$query" |
          json 'd["data"]["result"][0]["value"][1] if d["data"]["result"] else ""' 2>/dev/null || true)"
  if [[ -n $ttft && $ttft != NaN ]]; then break; fi
  sleep 0.2
done
python3 -c "import sys; v=float(sys.argv[1]); sys.exit(0 if 0 < v < 60 else 1)" "${ttft:-nan}" ||
  fail "Prometheus TTFT p50 is '$ttft'"
workers_seen="$(curl -sf --get "$prom/api/v1/query" --data-urlencode 'query=count(tandem_worker_info)' |
                json 'd["data"]["result"][0]["value"][1] if d["data"]["result"] else 0')"
[[ $workers_seen == 2 ]] || fail "Prometheus sees $workers_seen workers"
step "Prometheus: TTFT p50 ${ttft} s, $workers_seen workers"

step "every query of the Grafana dashboard (deploy/grafana-dashboard.json) runs"
python3 - "$root/deploy/grafana-dashboard.json" "$prom" <<'PY' || fail "a Grafana dashboard query failed"
import json, sys, urllib.parse, urllib.request
dashboard, prom = sys.argv[1], sys.argv[2]
# Panels that must show data after the traffic above (the planner's need a planner).
must_have_data = {"Time to first token", "Inter-token latency", "Requests by outcome",
                  "Tokens per second", "KV cache usage per worker", "Ready workers per role",
                  "Engine busy fraction per worker", "KV transfer throughput"}
bad = []
for panel in json.load(open(dashboard))["panels"]:
    for target in panel["targets"]:
        expr = target["expr"].replace("$namespace", ".*").replace("$__rate_interval", "2m")
        url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            answer = json.load(urllib.request.urlopen(url, timeout=10))
        except Exception as e:  # a 400 carries the parse error
            bad.append(f"{panel['title']}: {expr}: {e}")
            continue
        if answer.get("status") != "success":
            bad.append(f"{panel['title']}: {expr}: {answer}")
        elif panel["title"] in must_have_data and target["refId"] == "A" and not answer["data"]["result"]:
            bad.append(f"{panel['title']}: {expr}: no data")
for line in bad:
    print("grafana:", line, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

step "headless Chromium: /dashboard loads and its charts follow traffic"
node "$root/tests/observability/dashboard.mjs" "$url" "$artifacts" || fail "dashboard check failed"
step "passed"
