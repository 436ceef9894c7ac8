#!/usr/bin/env bash
# Builds the browser runtime and the native reference CLI, then runs the Playwright tests in
# headless Chromium (WebGPU on SwiftShader, and the CPU backend). Screenshots land in tests/out/.
#   scripts/test_browser.sh [suite[:engine]]...   (default: all below)
# suite: api chat backends pwa npm convert resume csp device_lost soak big kquant; engine (lib.mjs ENGINE): webgpu (default) or cpu-N.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

[ -d node_modules/playwright-core ] && [ -d node_modules/vite ] || npm ci --no-audit --no-fund || npm install --no-audit --no-fund
[ "${SKIP_BUILD:-0}" = 1 ] || ./build.sh
./build.sh fetch-model
# The reference: the same engine natively, in the optimised `ci` profile the Rust tests already built.
[ "${SKIP_BUILD:-0}" = 1 ] && [ -x target/ci/mobilellm ] || cargo build --profile ci --bin mobilellm

suites=("$@")
# api and chat run on WebGPU and on the CPU backend with 1 and 2 threads; the other suites choose
# their engines inside (backends: every build; npm: both backends; convert: WebGPU); pwa runs twice;
# resume (downloads cut, resumed, changed) and csp (the page under its Content-Security-Policy) on
# the CPU backend with two threads (fast here, and the pool workers run under the policy).
# device_lost: WebGPU only (a lost GPU device). soak: generate / abort / new chat / ContextFull
# cycles with memory sampled (200 on the CPU backend; fewer on SwiftShader, see soak.test.mjs).
# big: the 1.6 GB MobileLLM-1.5B-shaped model tests/model_big.rs writes, streamed onto WebGPU.
# kquant: the Q5 / K-quant models tests/kquant_models.rs writes, on the CPU backend and WebGPU.
[ ${#suites[@]} -gt 0 ] || suites=(backends api:cpu-2 chat:cpu-2 api:cpu-1 chat:cpu-1 pwa:cpu-2 api:webgpu chat:webgpu pwa:webgpu npm convert resume:cpu-2 csp:cpu-2 device_lost:webgpu soak:cpu-2 soak:webgpu big kquant)
# convert.test.mjs writes its random checkpoints with numpy.
bash scripts/fetch_numpy.sh
status=0
for spec in "${suites[@]}"; do
  s=${spec%%:*}
  engine=webgpu; [ "$spec" != "$s" ] && engine=${spec#*:}
  echo "== tests/browser/$s.test.mjs ($engine)"
  # One Chromium at a time: the machine has two cores and SwiftShader uses both.
  MOBILELLM_TEST_ENGINE=$engine node --test-reporter=spec "tests/browser/$s.test.mjs" || status=1
done
exit $status
