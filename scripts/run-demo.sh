#!/usr/bin/env bash
# `make run`: serves the built-in demo model on this machine — a router, one prefill worker and
# one decode worker (examples/local.yaml) — sends one streamed chat request through them, prints
# how to send your own, and keeps serving until Ctrl-C, which drains and stops every process.
#
# The demo model is written on first use: dummy (random) weights in a shape that answers fast on
# two CPU cores, with a real BPE tokenizer and chat template. Its answers are fluent-looking
# nonsense; bring a real GGUF or Hugging Face model and point `model:` in the spec at it.
set -euo pipefail
build="${1:-build}"
tandem="$(cd "$(dirname "$build/tandem")" && pwd)/tandem"
spec=examples/local.yaml
model=models/demo.gguf
url=http://127.0.0.1:8000
bold() { printf '\n\033[1m== %s\033[0m\n' "$1"; }

if [[ ! -f $model ]]; then
  bold "writing the demo model ($model: dummy weights, real tokenizer)"
  mkdir -p "$(dirname "$model")"
  "$tandem" model create --preset small --out "$model.tmp"
  mv "$model.tmp" "$model"
fi

# A deployment an earlier `make run` left behind when it was killed hard.
"$tandem" down >/dev/null 2>&1 || true

stopping=0
stop() {
  [[ $stopping == 1 ]] && return
  stopping=1
  trap - INT TERM EXIT
  bold "stopping (drain, then stop)"
  "$tandem" down || true
}
trap stop INT TERM EXIT

bold "starting router + prefill + decode: tandem up --detach $spec"
"$tandem" up --detach "$spec"

bold "a streamed chat request through the router (prefill and decode on separate workers)"
echo "\$ tandem chat --url $url 'Tell me about disaggregated inference.'"
"$tandem" chat --url "$url" --max-tokens 48 'Tell me about disaggregated inference.'

cat <<EOF

Serving the demo model at $url (OpenAI API). Try:

  curl -N $url/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model": "demo", "stream": true, "max_tokens": 32,
         "messages": [{"role": "user", "content": "Hello!"}]}'

  $build/tandem bench --url $url --model demo --num-requests 50 --rate 4
  $build/tandem status        # roles, replicas, readiness, epochs
  $url/dashboard   # live charts
  $url/metrics     # Prometheus metrics

Ctrl-C stops the deployment.
EOF
while true; do sleep 3600 & wait $! || true; done
