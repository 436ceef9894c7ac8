#!/usr/bin/env bash
# Fuzzing (cargo-fuzz, libFuzzer) of everything that reads untrusted input: GGUF files (reader,
# model config, tensor views, dequantisation) and their tokenizer and chat template, Hugging Face
# checkpoints (safetensors headers, torch.save zip and pickle), tokenizer.model / tokenizer.json,
# and chat templates under their limits. What each target does: fuzz/src/lib.rs.
#
#   scripts/fuzz.sh [SECONDS]  run each target SECONDS (default 300) in turn, adding what it finds
#                              to fuzz/corpus/<target>, then minimise that corpus (cargo fuzz cmin,
#                              one input per covered edge)
#   scripts/fuzz.sh --ci       build, then run each target FUZZ_CI_SECONDS (default 15) starting
#                              from the committed corpus (left unchanged); fails on any crash,
#                              timeout or out-of-memory
#   scripts/fuzz.sh --seed     write the seed inputs (fuzz/seeds/, not committed: synthetic GGUFs,
#                              llama.cpp's vocabularies and chat templates, make_checkpoint.py
#                              checkpoints) and merge what adds coverage into fuzz/corpus/
#
# FUZZ_TARGETS="a b" runs only those targets. A finding is written to fuzz/artifacts/<target>/;
# each one becomes an input under tests/fixtures/fuzz/<target>/, replayed by
# tests/fuzz_regressions.rs on the stable toolchain (`cargo test --test fuzz_regressions`).
# Installs what it needs: the nightly toolchain (minimal profile) and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=run
SECONDS_PER_TARGET=300
case "${1:-}" in
  --ci) MODE=ci; SECONDS_PER_TARGET="${FUZZ_CI_SECONDS:-15}" ;;
  --seed) MODE=seed ;;
  "") ;;
  -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
  *) SECONDS_PER_TARGET="$1" ;;
esac
ALL_TARGETS="gguf_model gguf_tokenizer checkpoint pickle hf_tokenizer chat_template"
TARGETS="${FUZZ_TARGETS:-$ALL_TARGETS}"

# Per-target input size limits, a little above the largest seed (GGUFs of 3-30 KB, vocabularies of
# ~10 KB, checkpoints of ~15 KB, the largest real chat template 16.7 KB): small inputs run fast and
# keep the committed corpus small.
max_len() {
  case "$1" in
    gguf_model) echo 32768 ;;
    gguf_tokenizer) echo 16384 ;;
    checkpoint|hf_tokenizer) echo 24576 ;;
    pickle) echo 8192 ;;
    chat_template) echo 20480 ;;
  esac
}
# A unit running 5 s is a hang (the slowest real input takes milliseconds; a hostile chat
# template is stopped within ~0.2 s natively); 1 GiB of memory is a blow-up.
LIBFUZZER_FLAGS=(-timeout=5 -rss_limit_mb=1024 -malloc_limit_mb=1024 -print_final_stats=1)
# No sanitizer (safe Rust: the sanitizers would find little that a panic does not), but debug
# assertions and overflow checks on, so an arithmetic overflow on hostile sizes is a finding.
# Long runs: optimised (16 codegen units: a quicker build, wgpu comes along with the library, for
# a few percent fewer executions per second). --ci: a debug build, half the compile time (about
# 2.5 CPU-minutes instead of 5) and big stack frames, so deep recursion shows up as a crash
# (fuzzing found a pickle stack overflow that way).
if [ "$MODE" = ci ]; then
  FUZZ_BUILD=(-s none --dev)
else
  FUZZ_BUILD=(-s none -a --codegen-units 16)
fi

start=$(date +%s)
step() { echo "== [$(( $(date +%s) - start ))s] $*"; }

if ! cargo +nightly --version >/dev/null 2>&1; then
  step "installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  cargo install --locked cargo-fuzz || cargo install cargo-fuzz
fi

if [ "$MODE" = seed ]; then
  SEEDS="$ROOT/fuzz/seeds"
  rm -rf "$SEEDS"
  mkdir -p "$SEEDS"
  step "seeds from the test helpers (synthetic GGUFs, vocabularies, templates)"
  bash scripts/fetch_vocab.sh >/dev/null || echo "NOTICE: no llama.cpp vocabularies/templates: fewer seeds"
  MOBILELLM_FUZZ_SEEDS="$SEEDS" cargo test --profile ci --test fuzz_regressions write_fuzz_seeds -- --exact >/dev/null
  step "seeds from tests/fixtures/make_checkpoint.py (checkpoints, pickles, tokenizer.model)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  small=(--dim 16 --layers 1 --heads 2 --kv-heads 1 --ffn 16 --vocab 64 --no-reference)
  python3 tests/fixtures/make_checkpoint.py "$tmp/st" --kind llama-tied --format safetensors --dtype f16 "${small[@]}" >/dev/null
  python3 tests/fixtures/make_checkpoint.py "$tmp/st32" --kind llama --format safetensors --dtype f32 "${small[@]}" >/dev/null
  python3 tests/fixtures/make_checkpoint.py "$tmp/bin" --kind mobilellm --format bin --dtype bf16 --views "${small[@]}" >/dev/null
  python3 tests/fixtures/make_checkpoint.py "$tmp/bin16" --kind llama --format bin --dtype f16 "${small[@]}" >/dev/null
  python3 - "$tmp" "$SEEDS" <<'PY'
import os, sys, zipfile
tmp, seeds = sys.argv[1], sys.argv[2]
def put(target, name, data):
    os.makedirs(os.path.join(seeds, target), exist_ok=True)
    with open(os.path.join(seeds, target, name), "wb") as f:
        f.write(data)
for d in ("st", "st32"):
    put("checkpoint", d + ".safetensors", b"\x00" + open(os.path.join(tmp, d, "model.safetensors"), "rb").read())
for d in ("bin", "bin16"):
    raw = open(os.path.join(tmp, d, "pytorch_model.bin"), "rb").read()
    put("checkpoint", d + ".bin", b"\x01" + raw)
    with zipfile.ZipFile(os.path.join(tmp, d, "pytorch_model.bin")) as z:
        put("pickle", d + ".pkl", z.read([n for n in z.namelist() if n.endswith("data.pkl")][0]))
# hf_tokenizer: 2-byte text length, text, selector 0 = tokenizer.model.
text = b"Hello world, once upon a time"
put("hf_tokenizer", "tokenizer_model.bin", len(text).to_bytes(2, "little") + text + b"\x00" + open(os.path.join(tmp, "st", "tokenizer.model"), "rb").read())
PY
  step "merging the seeds that add coverage into fuzz/corpus"
  for t in $TARGETS; do
    mkdir -p "fuzz/corpus/$t"
    [ -d "$SEEDS/$t" ] || continue
    cargo +nightly fuzz run "${FUZZ_BUILD[@]}" "$t" "fuzz/corpus/$t" "$SEEDS/$t" -- -merge=1 -max_len="$(max_len "$t")" "${LIBFUZZER_FLAGS[@]}" 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new files" || true
    echo "$t: $(ls "fuzz/corpus/$t" | wc -l) inputs, $(du -sk "fuzz/corpus/$t" | cut -f1) KB"
  done
  exit 0
fi

step "building the fuzz targets (cargo +nightly fuzz build ${FUZZ_BUILD[*]})"
cargo +nightly fuzz build "${FUZZ_BUILD[@]}"

LOGS=$(mktemp -d)
summary=()
failed=()
for t in $TARGETS; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  if [ "$MODE" = ci ]; then
    # New inputs go to a scratch directory; the committed corpus is only read.
    dirs=("$LOGS/new-$t" "fuzz/corpus/$t")
    mkdir -p "$LOGS/new-$t"
  else
    dirs=("fuzz/corpus/$t")
  fi
  step "fuzzing $t for ${SECONDS_PER_TARGET}s"
  set +e
  cargo +nightly fuzz run "${FUZZ_BUILD[@]}" "$t" "${dirs[@]}" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" -artifact_prefix="fuzz/artifacts/$t/" \
    "${LIBFUZZER_FLAGS[@]}" >"$LOGS/$t.log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$LOGS/$t.log" | tail -1 | grep -o '[0-9]*$' || echo "?")
  if [ "$rc" != 0 ]; then
    failed+=("$t")
    echo "FAIL: $t (exit $rc); the end of its log:"
    tail -40 "$LOGS/$t.log"
    ls -t "fuzz/artifacts/$t" | head -3 | sed "s|^|  artifact: fuzz/artifacts/$t/|"
  elif [ "$MODE" = run ]; then
    # Keep one input per covered edge (not per hit-count bucket, libFuzzer's default): a corpus
    # of a few hundred small files per target, a few MB in all.
    cargo +nightly fuzz cmin "${FUZZ_BUILD[@]}" "$t" "fuzz/corpus/$t" -- -use_counters=0 -max_len="$(max_len "$t")" "${LIBFUZZER_FLAGS[@]}" >"$LOGS/$t.cmin.log" 2>&1 || echo "NOTICE: cmin of $t failed (see $LOGS/$t.cmin.log)"
  fi
  summary+=("$(printf '%-16s %10s execs in %4ss, corpus %4s inputs %6s KB' "$t" "$execs" "$SECONDS_PER_TARGET" "$(ls "fuzz/corpus/$t" | wc -l)" "$(du -sk "fuzz/corpus/$t" | cut -f1)")")
done

step "done"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" != 0 ]; then
  echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/; logs in $LOGS)"
  exit 1
fi
rm -rf "$LOGS"
