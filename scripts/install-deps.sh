#!/usr/bin/env bash
# Installs what Tandem needs to build, test and benchmark, from Debian bookworm packages
# (and npm packages used only by tests). Idempotent: installs only what is missing, and
# runs `apt-get update` only when something is missing.
#
# Usage: scripts/install-deps.sh [--bench] [--no-npm]
set -euo pipefail

want_bench=0
want_npm=1
for arg in "$@"; do
  case "$arg" in
    --bench) want_bench=1 ;;
    --no-npm) want_npm=0 ;;
    *) echo "install-deps: unknown argument '$arg' (allowed: --bench, --no-npm)" >&2; exit 2 ;;
  esac
done

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config git make ccache lld
  # libraries
  libabsl-dev libboost-dev nlohmann-json3-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libcli11-dev libxxhash-dev libopenblas-dev libssl-dev
  # tests, fuzzing and style
  libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev clang-format clang-tidy
  prometheus python3 python3-jsonschema python3-yaml iproute2 procps curl
  # the dashboard test drives headless Chromium
  chromium
)
# Node.js may come from elsewhere than Debian (its npm then conflicts with Debian's): only ask
# Debian for it when no node/npm is on the PATH.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi
if [[ $want_bench == 1 ]]; then
  packages+=(wrk nginx-light hyperfine)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) != 0 ]]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages used only by tests, pinned by tests/package-lock.json.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $want_npm == 1 && -f "$here/tests/package.json" ]]; then
  if [[ ! -d "$here/tests/node_modules" || "$here/tests/package-lock.json" -nt "$here/tests/node_modules/.package-lock.json" ]]; then
    echo "install-deps: installing npm test packages"
    (cd "$here/tests" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
