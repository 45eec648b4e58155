#!/usr/bin/env bash
# `make run`: shows what the freshly built `tandem` can do. The serving demo (router + prefill +
# decode on a dummy-weight model) replaces this once the serving components land.
set -euo pipefail
build="${1:-build}"
"$build/tandem" version
echo
"$build/tandem" --help
