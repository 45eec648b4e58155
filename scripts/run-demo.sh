#!/usr/bin/env bash
# `make run`: a tour of what the freshly built `tandem` does today — a deployment spec checked and
# rendered for Kubernetes, its gangs placed on a cluster model, and a cluster simulated with
# Tandem's own routing policy. The served demo model (router + prefill + decode on this machine)
# joins this tour when the worker and router processes land.
set -euo pipefail
build="${1:-build}"
tandem="$build/tandem"
step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }

step "version and CPU paths" "tandem version"
"$tandem" version

step "a disaggregated deployment spec, validated" "tandem validate examples/disagg-8b.yaml"
"$tandem" validate examples/disagg-8b.yaml

step "rendered for Grove + KAI Scheduler (first lines)" \
  "tandem render --target grove examples/disagg-8b.yaml | head -30"
rendered="$("$tandem" render --target grove examples/disagg-8b.yaml)"
printf '%s\n' "$rendered" | head -30

step "gang- and topology-aware placement on a cluster model" \
  "tandem place --cluster examples/clusters/small.yaml --spec examples/place/disagg.yaml"
"$tandem" place --cluster examples/clusters/small.yaml --spec examples/place/disagg.yaml || true

step "the same cluster, pod by pod (the deadlock gangs prevent)" \
  "tandem place --cluster examples/clusters/tiny.yaml --spec examples/place/deadlock.yaml --pod-by-pod"
"$tandem" place --cluster examples/clusters/tiny.yaml --spec examples/place/deadlock.yaml \
  --pod-by-pod || true

step "topology-aware vs blind prefill/decode pairing, simulated on 64 GPUs" \
  "tandem sim examples/sim/exp2-topology.yaml"
"$tandem" sim examples/sim/exp2-topology.yaml

printf '\nMore: %s --help, and docs/ (architecture, placement, simulations, planner, routing).\n' "$tandem"
