#!/usr/bin/env bash
# The test command (README): sets the machine up, then runs every test.
#   0. Hygiene: cargo fmt --check, and clippy with warnings as errors (native, all targets; wasm32).
#   1. Rust: unit tests, kernels vs the CPU reference, GGUF/tokenizer/converter tests, synthetic
#      models end to end, and SmolLM2 against llama.cpp's reference outputs (wgpu on lavapipe).
#   2. Fuzzing: every reader of untrusted input, 15 s per target from the committed corpus
#      (scripts/fuzz.sh --ci; installs nightly + cargo-fuzz).
#   3. The wasm build, and the type check of www/ (scripts/typecheck.sh).
#   4. The browser: Playwright tests in headless Chromium (WebGPU on SwiftShader).
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
bash scripts/setup.sh
echo "== format check (cargo fmt --check)"
cargo fmt --all -- --check
echo "== clippy, native (every target: library, CLI, tests, examples)"
cargo clippy --all-targets -- -D warnings
echo "== clippy, wasm32 (the library as the browser builds it)"
cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings

export MOBILELLM_MODEL="$(bash scripts/fetch_model.sh)"
bash scripts/fetch_vocab.sh >/dev/null

echo "== cargo tests (profile ci: optimised, so the CPU reference runs the real model quickly)"
mkdir -p target
cargo test --profile ci --no-fail-fast -- --test-threads=1 --show-output 2>&1 | tee target/test-output.txt
echo "== fuzzing (a short run from the committed corpus; fails on any crash, hang or blow-up)"
bash scripts/fuzz.sh --ci
echo "== wasm build (the type check reads its TypeScript declarations; the browser tests reuse it)"
./build.sh
echo "== type check of www/ (TypeScript over the JSDoc types and the worker protocol)"
bash scripts/typecheck.sh
echo "== browser tests"
# The wasm is built above, and the native CLI by the cargo tests (tests/cli.rs).
SKIP_BUILD=1 bash scripts/test_browser.sh
echo "== all tests passed"
