#!/usr/bin/env bash
# Builds the browser runtime into www/ (a static site):
#   www/pkg/mobilellm_web.js + mobilellm_web_bg.wasm   (cargo -> wasm-bindgen --target web -> wasm-opt)
#   www/index.html, www/mobilellm.js, www/worker.js, ... (checked in, served as they are)
#
#   ./build.sh            build (release)
#   ./build.sh serve      build, fetch the default model into www/models/, serve on 127.0.0.1:8080
#   ./build.sh serve-only skip the build (reuse www/pkg), fetch the model, serve
#   ./build.sh pack       build, then `npm pack` the package into target/npm/ (SKIP_BUILD=1 reuses www/pkg)
# Environment: PORT (8080), HOST (127.0.0.1), NO_WASM_OPT=1 to skip wasm-opt.
set -euo pipefail
cd "$(dirname "$0")"

WASM_BINDGEN_VERSION=0.2.130
TARGET=wasm32-unknown-unknown

# The engine ships as four wasm builds, chosen at run time by www/engine-variants.js:
#   pkg/                one thread, SIMD128: WebGPU, and the CPU backend without cross-origin isolation
#   pkg-relaxed/        one thread, + relaxed-SIMD dot products (Chrome/Edge 114+, Firefox 146+)
#   pkg-mt/             shared memory + threads (pages sent with COOP/COEP), SIMD128
#   pkg-mt-relaxed/     both
# A browser without relaxed SIMD rejects a module that uses it, and a module with shared memory
# needs cross-origin isolation, hence separate builds. The relaxed builds differ from their plain
# twins only in this crate (a cargo feature), so they reuse the compiled dependencies.
# VARIANTS="pkg pkg-mt" limits the build (tests of one variant).
ALL_VARIANTS="pkg pkg-relaxed pkg-mt pkg-mt-relaxed"
ST_RUSTFLAGS="-C target-feature=+simd128"
# Threads: shared, imported memory (the pool's Web Workers instantiate the module on it), a 4 GiB
# maximum (wasm32's whole address space), and the TLS exports wasm-bindgen's thread start needs.
MT_RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 \
-C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 \
-C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size \
-C link-arg=--export=__tls_align -C link-arg=--export=__tls_base"

build_variant() {
  local name=$1 features="" target_dir=target/wasm-st
  case "$name" in *relaxed) features="--features relaxed-simd" ;; esac
  local out="www/$name"
  case "$name" in
    pkg-mt*)
      target_dir=target/wasm-mt
      # std must be rebuilt with atomics; RUSTC_BOOTSTRAP lets stable cargo do it (rust-src component).
      RUSTC_BOOTSTRAP=1 RUSTFLAGS="$MT_RUSTFLAGS" cargo build --lib --release --target "$TARGET" \
        --target-dir "$target_dir" -Z build-std=panic_abort,std $features ;;
    *)
      RUSTFLAGS="$ST_RUSTFLAGS" cargo build --lib --release --target "$TARGET" --target-dir "$target_dir" $features ;;
  esac
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  wasm-bindgen --target web --no-typescript --out-dir "$out.tmp" "$target_dir/$TARGET/release/mobilellm_web.wasm"
  local wasm="$out.tmp/mobilellm_web_bg.wasm"
  if [ "${NO_WASM_OPT:-0}" != 1 ]; then
    # binaryen from npm (v132): Debian's v108 emits a module that fails at init.
    # -O3 rather than -Oz: the decode loop's CPU side is on the hot path.
    node_modules/.bin/wasm-opt -O3 --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
      --enable-simd --enable-relaxed-simd --enable-threads \
      "$wasm" -o "$wasm.opt"
    mv "$wasm.opt" "$wasm"
  fi
  rm -rf "$out" && mv "$out.tmp" "$out"
  local raw gz
  raw=$(stat -c %s "$out/mobilellm_web_bg.wasm")
  gz=$(gzip -9 -c "$out/mobilellm_web_bg.wasm" | wc -c)
  echo "build.sh: $out/mobilellm_web_bg.wasm: $raw bytes ($gz gzipped)" >&2
}

build() {
  command -v wasm-bindgen >/dev/null && wasm-bindgen --version | grep -q "$WASM_BINDGEN_VERSION" || {
    echo "build.sh: wasm-bindgen-cli $WASM_BINDGEN_VERSION is required (scripts/setup.sh installs it)" >&2; exit 1; }
  [ -x node_modules/.bin/wasm-opt ] || npm install --no-audit --no-fund >&2
  # wgpu 30 carries its own WebGPU bindings: no web_sys_unstable_apis cfg needed.
  for v in ${VARIANTS:-$ALL_VARIANTS}; do build_variant "$v"; done
  # The service worker's file list with content hashes (www/precache-manifest.js): a new build is
  # a new version, so installed copies of the page replace their cached files.
  node scripts/precache.mjs www
}

fetch_model() {
  local src
  src=$(bash scripts/fetch_model.sh)
  mkdir -p www/models
  local dst="www/models/$(basename "$src")"
  # A hard link when possible (same filesystem), else a copy: 98 MB, done once.
  if [ ! -f "$dst" ] || [ "$(stat -c %s "$dst")" != "$(stat -c %s "$src")" ]; then
    ln -f "$src" "$dst" 2>/dev/null || cp "$src" "$dst"
  fi
  echo "build.sh: model at $dst" >&2
}

# The npm package `mobilellm-web`: the modules reachable from www/mobilellm.js (not the chat page),
# the wasm, and www/npm/ (package.json template, index.d.ts, README), packed with `npm pack`.
pack_npm() {
  [ "${SKIP_BUILD:-0}" = 1 ] && [ -f www/pkg/mobilellm_web_bg.wasm ] || build >&2
  local out=target/npm/mobilellm-web
  rm -rf "$out" target/npm/mobilellm-web-*.tgz
  node www/npm/assemble.mjs "$out" >&2
  local tgz
  tgz=$(cd "$out" && npm pack --pack-destination .. --silent | tail -n 1)
  echo "build.sh: $(stat -c %s "target/npm/$tgz") bytes, $(tar -tzf "target/npm/$tgz" | wc -l) files" >&2
  echo "$PWD/target/npm/$tgz"
}

case "${1:-build}" in
  build) build ;;
  serve) bash scripts/setup.sh >&2; build; fetch_model; exec node www/serve.mjs --root www --port "${PORT:-8080}" --host "${HOST:-127.0.0.1}" ;;
  serve-only) fetch_model; node scripts/precache.mjs www; exec node www/serve.mjs --root www --port "${PORT:-8080}" --host "${HOST:-127.0.0.1}" ;;
  fetch-model) fetch_model ;;
  pack) pack_npm ;;
  *) echo "usage: $0 [build|serve|serve-only|fetch-model|pack]" >&2; exit 2 ;;
esac
