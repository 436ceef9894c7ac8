#!/usr/bin/env bash
# The test command (README): sets the machine up, then runs every test.
#   1. Rust: unit tests, kernels vs the CPU reference, GGUF/tokenizer/converter tests, synthetic
#      models end to end, and SmolLM2 against llama.cpp's reference outputs (wgpu on lavapipe).
#   2. The browser: wasm build and Playwright tests in headless Chromium (WebGPU on SwiftShader).
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
bash scripts/setup.sh
export MOBILELLM_MODEL="$(bash scripts/fetch_model.sh)"
bash scripts/fetch_vocab.sh >/dev/null

echo "== cargo tests (profile ci: optimised, so the CPU reference runs the real model quickly)"
mkdir -p target
cargo test --profile ci --no-fail-fast -- --test-threads=1 --show-output 2>&1 | tee target/test-output.txt
echo "== browser tests"
bash scripts/test_browser.sh
echo "== all tests passed"
