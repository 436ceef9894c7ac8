#!/usr/bin/env bash
# The browser CPU backend against wllama (llama.cpp in wasm) in one headless Chromium run: load,
# time to first token, decode tokens/s on 1 and 2 threads, medians and ratios (JSON on stdout).
#   scripts/bench_browser.sh [--runs 3] [--gen 64] [--threads 1,2] [--webgpu]
# SKIP_BUILD=1 reuses the wasm builds in www/pkg*.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
[ -d node_modules/@wllama/wllama ] && [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund
[ "${SKIP_BUILD:-0}" = 1 ] || ./build.sh >&2
./build.sh fetch-model >&2
exec node tests/browser/bench_cpu.mjs "$@"
