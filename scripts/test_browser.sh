#!/usr/bin/env bash
# Builds the browser runtime and the native reference CLI, then runs the Playwright tests in
# headless Chromium (SwiftShader WebGPU). Screenshots land in tests/out/.
#   scripts/test_browser.sh [api|chat|pwa|npm|convert]...   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

[ -d node_modules/playwright-core ] && [ -d node_modules/vite ] || npm ci --no-audit --no-fund || npm install --no-audit --no-fund
[ "${SKIP_BUILD:-0}" = 1 ] || ./build.sh
./build.sh fetch-model
# The reference: the same engine natively, in the optimised `ci` profile the Rust tests already built.
[ "${SKIP_BUILD:-0}" = 1 ] && [ -x target/ci/mobilellm ] || cargo build --profile ci --bin mobilellm

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(api chat pwa npm convert)
# convert.test.mjs writes its random checkpoints with numpy.
bash scripts/fetch_numpy.sh
status=0
for s in "${suites[@]}"; do
  echo "== tests/browser/$s.test.mjs"
  # One Chromium at a time: the machine has two cores and SwiftShader uses both.
  node --test-reporter=spec "tests/browser/$s.test.mjs" || status=1
done
exit $status
