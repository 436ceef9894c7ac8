#!/usr/bin/env bash
# The native CPU backend against llama.cpp (node-llama-cpp, CPU) on the same GGUF, in one run,
# interleaved: `mobilellm bench --backend cpu` and tools/reference/bench.mjs for each thread count.
# Prints each run and the medians' ratio. The machine is shared: compare ratios, not absolutes.
#   scripts/bench_native.sh [threads...]     (default: 1 2; RUNS=3)
#   BACKEND=gpu scripts/bench_native.sh 2    (ours on the WebGPU backend: lavapipe here, a real GPU elsewhere)
#   MODEL=path.gguf scripts/bench_native.sh  (another GGUF than the SmolLM2 Q4_1 test model)
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
RUNS=${RUNS:-3}
BACKEND=${BACKEND:-cpu}
threads=("$@"); [ ${#threads[@]} -gt 0 ] || threads=(1 2)
model=${MODEL:-$(bash scripts/fetch_model.sh)}
cargo build --release --bin mobilellm >&2
[ -d tools/reference/node_modules/node-llama-cpp ] || (cd tools/reference && npm install --no-audit --no-fund >&2)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for t in "${threads[@]}"; do
  ours_d=(); ours_p=(); ref_d=(); ref_p=()
  for r in $(seq "$RUNS"); do
    j=$(target/release/mobilellm bench --model "$model" --backend "$BACKEND" --threads "$t" --prompt-len 64 --gen 128 --json)
    ours_d+=("$(node -e 'console.log(JSON.parse(process.argv[1]).decode_tok_s)' "$j")")
    ours_p+=("$(node -e 'console.log(JSON.parse(process.argv[1]).prefill_tok_s)' "$j")")
    line=$(MODEL_PATH="$model" node tools/reference/bench.mjs "$t" | grep "^threads=")
    ref_p+=("$(sed -E 's/.*prefill ([0-9.]+) tok.*/\1/' <<<"$line")")
    ref_d+=("$(sed -E 's/.*decode ([0-9.]+) tok.*/\1/' <<<"$line")")
    echo "threads=$t run $r: ours ($BACKEND) decode ${ours_d[-1]} prefill ${ours_p[-1]} | llama.cpp decode ${ref_d[-1]} prefill ${ref_p[-1]} tok/s" >&2
  done
  od=$(printf '%s\n' "${ours_d[@]}" | median); op=$(printf '%s\n' "${ours_p[@]}" | median)
  rd=$(printf '%s\n' "${ref_d[@]}" | median); rp=$(printf '%s\n' "${ref_p[@]}" | median)
  echo "threads=$t: decode ours ($BACKEND) $od llama.cpp $rd ratio $(awk -v a="$od" -v b="$rd" 'BEGIN{printf "%.2f", a/b}') | prefill ours $op (64-token prompt) llama.cpp $rp (~200-token prompt) | ours prefill/decode $(awk -v a="$op" -v b="$od" 'BEGIN{printf "%.1f", a/b}')x"
done
echo "load average: $(cat /proc/loadavg)"
