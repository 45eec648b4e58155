#!/usr/bin/env bash
# Rewrites tests/deploy/golden/*.yaml from the example specs after an intended renderer change.
# Review the diff (git diff tests/deploy/golden) before committing it.
#
# Usage: tests/deploy/update-golden.sh BUILD_DIR
set -euo pipefail
build="${1:?usage: tests/deploy/update-golden.sh BUILD_DIR}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cmake --build "$build" --target deploy_test
TANDEM_SOURCE_DIR="$root" TANDEM_UPDATE_GOLDEN=1 "$build/src/deploy/deploy_test" \
  --gtest_filter='RenderGoldenTest.*' --gtest_brief=1
git -C "$root" status --short -- tests/deploy/golden
