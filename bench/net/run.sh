#!/usr/bin/env bash
# HTTP benchmarks: Tandem's server vs nginx (one worker) on the same small JSON response under
# wrk with keep-alive, then 1,000 concurrent SSE streams.
# Usage: bench/net/run.sh BUILD_DIR [SECONDS]
set -euo pipefail
build="$(cd "${1:?usage: bench/net/run.sh BUILD_DIR [SECONDS]}" && pwd)"
seconds="${2:-10}"
for tool in wrk nginx taskset; do
  command -v "$tool" >/dev/null || { echo "bench/net: $tool missing (scripts/install-deps.sh --bench)" >&2; exit 1; }
done
work="$(mktemp -d)"
cleanup() {
  [[ -n "${server_pid:-}" ]] && kill "$server_pid" 2>/dev/null || true
  [[ -f "$work/nginx.pid" ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

body='{"object":"list","data":[{"id":"demo","object":"model"}]}'
mkfifo "$work/stdin"
taskset -c 0 "$build/bench/net/http_bench_server" <"$work/stdin" >"$work/port" &
server_pid=$!
exec 3>"$work/stdin"
for _ in $(seq 100); do [[ -s "$work/port" ]] && break; sleep 0.05; done
tandem_port="$(cat "$work/port")"

nginx_port=$((tandem_port + 1))
mkdir -p "$work/html" "$work/logs"
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/body; proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    location /json { default_type application/json; return 200 '$body'; }
  }
}
CONF
taskset -c 0 nginx -c "$work/nginx.conf" -p "$work" 2>"$work/nginx.err" 3>&- &
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$nginx_port/json" >/dev/null 2>&1 && break; sleep 0.05; done

run_wrk() {
  taskset -c 1 wrk -t1 -c50 -d"${seconds}s" --latency "$1" 2>&1
}
echo "--- tandem (1 loop thread, core 0), wrk -t1 -c50 -d${seconds}s (core 1)"
tandem_out="$(run_wrk "http://127.0.0.1:$tandem_port/json")"
echo "$tandem_out" | grep -E "Requests/sec|50%|99%"
echo "--- nginx (1 worker, core 0), same load"
nginx_out="$(run_wrk "http://127.0.0.1:$nginx_port/json")"
echo "$nginx_out" | grep -E "Requests/sec|50%|99%"
t_rps="$(echo "$tandem_out" | awk '/Requests\/sec/{print $2}')"
n_rps="$(echo "$nginx_out" | awk '/Requests\/sec/{print $2}')"
awk -v t="$t_rps" -v n="$n_rps" 'BEGIN{printf "ratio tandem/nginx requests/s: %.2f (target >= 0.50)\n", t/n}'
exec 3>&-
wait "$server_pid" 2>/dev/null || true
server_pid=""

echo "--- SSE: 1,000 concurrent streams x 100 events, one server loop thread"
"$build/bench/net/sse_bench" 1000 100 20
