#!/usr/bin/env bash
# The local orchestrator with real roles (router + prefill + 2 decode workers from `tandem up`),
# under load from `tandem bench`:
#   1. scale decode 2 -> 1 while requests stream: the drained instance finishes its requests,
#      no request fails;
#   2. kill -9 a decode worker: the orchestrator restarts it on the same address, and the router
#      sees the new epoch;
#   3. a rolling update (`tandem apply` with changed decode args) under load: no request fails,
#      and at least minAvailable decode workers stay ready throughout;
#   4. `tandem down` leaves no process behind.
# Usage: live_cluster_test.sh TANDEM_BINARY
set -euo pipefail
tandem="${1:?usage: live_cluster_test.sh TANDEM_BINARY}"
work="$(mktemp -d)"
run="$work/run"
bench_pid=""
monitor_pid=""

cleanup() {
  local rc=$?
  for pid in $bench_pid $monitor_pid; do kill "$pid" 2>/dev/null || true; done
  "$tandem" down --run-dir "$run" --timeout 30 >/dev/null 2>&1 || true
  if [[ $rc != 0 ]]; then
    for log in "$run"/*/logs/*.log "$run"/*/supervisor.log "$work"/bench-*.txt; do
      [[ -f $log ]] && { echo "==> $log <=="; tail -n 15 "$log"; }
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "live_cluster_test: FAIL: $*" >&2; exit 1; }
step() { echo "live_cluster_test: $*"; }
status_json() { "$tandem" status --json --run-dir "$run"; }
# Python one-liners over `tandem status --json`.
query() { status_json | python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }
decode_procs() {
  query 'print("\n".join(" ".join([i["id"], p["address"], str(p["pid"]), p["epoch"]]) for r in d["roles"] if r["name"]=="decode" for i in r["instances"] for p in i["processes"] if i["state"]=="ready"))'
}
router_workers() { curl -sf "$url/v1/workers"; }
start_bench() {  # NAME SECONDS
  "$tandem" bench --url "$url" --model model --endpoint completions --duration "$2" \
    --concurrency 3 --input-len 48 --output-len 24 --vocab-size 500 --seed 5 --json "$work/bench-$1.json" \
    >"$work/bench-$1.txt" 2>&1 &
  bench_pid=$!
}
check_bench() {  # NAME
  wait "$bench_pid" || { cat "$work/bench-$1.txt"; fail "bench $1 failed"; }
  bench_pid=""
  local completed failed
  completed="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["completed"])' "$work/bench-$1.json")"
  failed="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("failed", 0))' "$work/bench-$1.json")"
  if [[ $failed != 0 ]]; then
    python3 -c 'import json,sys; print("failures:", json.load(open(sys.argv[1])).get("failures"))' "$work/bench-$1.json"
    fail "$1: $failed of $((completed + failed)) requests failed"
  fi
  [[ $completed -gt 0 ]] || fail "$1: no request completed"
  step "$1: $completed requests, none failed"
}

"$tandem" model create --preset tiny --out "$work/model.gguf" >/dev/null
write_spec() {  # DECODE_ARGS
  cat >"$work/spec.yaml" <<SPEC
apiVersion: tandem/v1
name: live
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
    replicas: 2
    minAvailable: 1
    startsAfter: [router]
    readyTimeoutSeconds: 60
    args: [$1]
SPEC
}
write_spec '"--threads", "1"'
step "tandem up"
"$tandem" up --detach --random-ports --run-dir "$run" "$work/spec.yaml" >"$work/up.log" ||
  { cat "$work/up.log"; fail "tandem up failed"; }
url="http://$(query 'print([p["address"] for r in d["roles"] if r["kind"]=="router" for i in r["instances"] for p in i["processes"]][0])')"
for _ in $(seq 1 100); do
  [[ $(router_workers | grep -o '"state":"ready"' | wc -l) == 3 ]] && break
  sleep 0.1
done
[[ $(router_workers | grep -o '"state":"ready"' | wc -l) == 3 ]] || fail "the router does not see 3 ready workers"
mapfile -t all_pids < <(query 'print("\n".join(str(p["pid"]) for r in d["roles"] for i in r["instances"] for p in i["processes"]))')

step "1. scale decode 2 -> 1 under load"
start_bench scale 8
sleep 2
"$tandem" scale --run-dir "$run" decode 1 --wait --timeout 60 >"$work/scale.txt" ||
  { cat "$work/scale.txt"; fail "tandem scale decode 1"; }
check_bench scale
[[ $(decode_procs | wc -l) == 1 ]] || { decode_procs; fail "expected 1 decode instance after scale-down"; }
for _ in $(seq 1 50); do
  [[ $(router_workers | grep -o '"role":"decode"' | wc -l) == 1 ]] && break
  sleep 0.1
done
"$tandem" scale --run-dir "$run" decode 2 --wait --timeout 60 >/dev/null || fail "tandem scale decode 2"

step "2. kill -9 a decode worker"
mapfile -t procs < <(decode_procs)
read -r victim_id victim_addr victim_pid victim_epoch <<<"${procs[0]}"
kill -9 "$victim_pid"
new_epoch=""
for _ in $(seq 1 200); do
  new_epoch="$(router_workers | python3 -c "
import json,sys
for w in json.load(sys.stdin)['workers']:
    if w['url']=='http://$victim_addr' and w['state']=='ready' and w['epoch']!='$victim_epoch': print(w['epoch'])
" || true)"
  [[ -n $new_epoch ]] && break
  sleep 0.1
done
[[ -n $new_epoch ]] || fail "the router never saw $victim_id ($victim_addr) come back with a new epoch"
step "$victim_id restarted on $victim_addr: epoch $victim_epoch -> $new_epoch"

step "3. rolling update under load"
( while true; do  # record how many decode workers the router sees ready
    router_workers 2>/dev/null | python3 -c "
import json,sys
print(sum(1 for w in json.load(sys.stdin)['workers'] if w['role']=='decode' and w['state']=='ready'))" \
      >>"$work/ready-decode.txt" 2>/dev/null || true
    sleep 0.05
  done ) &
monitor_pid=$!
start_bench update 20
sleep 2
write_spec '"--threads", "1", "--max-batch-tokens", "256"'
"$tandem" apply --run-dir "$run" "$work/spec.yaml" --timeout 120 >"$work/apply.txt" ||
  { cat "$work/apply.txt"; fail "tandem apply"; }
check_bench update
kill "$monitor_pid" 2>/dev/null || true
wait "$monitor_pid" 2>/dev/null || true
monitor_pid=""
min_ready="$(sort -n "$work/ready-decode.txt" | head -1)"
[[ ${min_ready:-0} -ge 1 ]] || fail "ready decode workers dropped to ${min_ready:-0} during the update"
updated="$(query 'print(sum(1 for r in d["roles"] if r["name"]=="decode" for i in r["instances"] if i["generation"]==2 and i["state"]=="ready"))')"
[[ $updated == 2 ]] || fail "expected 2 decode instances of generation 2, found $updated"
step "update done: decode never below $min_ready ready"
mapfile -t -O "${#all_pids[@]}" all_pids < <(query 'print("\n".join(str(p["pid"]) for r in d["roles"] for i in r["instances"] for p in i["processes"]))')

step "4. tandem down"
"$tandem" down --run-dir "$run" --timeout 60 >/dev/null || fail "tandem down"
for pid in "${all_pids[@]}"; do
  if kill -0 "$pid" 2>/dev/null && ! grep -q zombie "/proc/$pid/status" 2>/dev/null; then
    fail "process $pid is still running after tandem down"
  fi
done
step "passed"
