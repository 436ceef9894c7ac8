#!/usr/bin/env bash
# Fetches llama.cpp's tokenizer test vocabularies (ggml-vocab-*.gguf with their .inp/.out reference
# tokenisations) from the PyPI sdist llama-cpp-python==0.3.36 (MIT; it vendors llama.cpp) into
# ~/.cache/mobilellm-web/vocab (or $MOBILELLM_CACHE/vocab). Skips the download when all are present.
# Also extracts llama.cpp's collection of chat templates (models/templates/*.jinja) into
# ~/.cache/mobilellm-web/templates for the chat-template tests. Prints the vocab directory on stdout.
#
# Vocabularies: llama-spm (SentencePiece `llama`), and byte-level `gpt2` ones whose pre-tokenizer
# we implement: gpt-2 (gpt2), llama-bpe (llama3), starcoder and refact (the regex `smollm` uses), mpt.
set -euo pipefail
CACHE="${MOBILELLM_CACHE:-$HOME/.cache/mobilellm-web}"
DEST="$CACHE/vocab"
TEMPLATES="$CACHE/templates"
NAMES="llama-spm gpt-2 llama-bpe starcoder refact mpt"
mkdir -p "$DEST"

missing=0
for n in $NAMES; do
  for ext in gguf gguf.inp gguf.out; do
    [ -s "$DEST/ggml-vocab-$n.$ext" ] || missing=1
  done
done
[ -s "$TEMPLATES/meta-llama-Llama-3.2-3B-Instruct.jinja" ] || missing=1
if [ "$missing" = 0 ]; then echo "$DEST"; exit 0; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# --no-binary for this package only: we want the sdist (it carries vendor/llama.cpp/models), and
# pip may still use wheels for the build backend it needs to read the metadata.
python3 -m pip download -q --no-deps --no-binary llama-cpp-python --dest "$tmp" llama-cpp-python==0.3.36 >&2
sdist=$(ls "$tmp"/llama_cpp_python-0.3.36.tar.gz)
members=()
for n in $NAMES; do
  for ext in gguf gguf.inp gguf.out; do
    members+=("llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-$n.$ext")
  done
done
tar -xzf "$sdist" -C "$tmp" "${members[@]}"
tar -xzf "$sdist" -C "$tmp" --wildcards 'llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/*.jinja'
rm -rf "$TEMPLATES.part" && mkdir -p "$TEMPLATES.part"
cp "$tmp"/llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/*.jinja "$TEMPLATES.part/"
rm -rf "$TEMPLATES" && mv "$TEMPLATES.part" "$TEMPLATES"
for m in "${members[@]}"; do
  f="$tmp/$m"
  # .part then mv, so an interrupted run never leaves a truncated file that looks complete.
  cp "$f" "$DEST/$(basename "$f").part"
  mv "$DEST/$(basename "$f").part" "$DEST/$(basename "$f")"
done
echo "$DEST"
