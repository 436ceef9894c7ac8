#!/usr/bin/env bash
# Installs numpy (from PyPI) for tests/fixtures/make_checkpoint.py, which writes the random
# Hugging Face checkpoints the converter tests (tests/convert_*.rs) convert. Skips when present.
set -euo pipefail
if python3 -c 'import numpy' 2>/dev/null; then exit 0; fi
echo "fetch_numpy: pip install numpy" >&2
# A Debian system python refuses pip installs unless told otherwise (PEP 668).
python3 -m pip install -q numpy 2>/dev/null || python3 -m pip install -q --break-system-packages numpy
python3 -c 'import numpy'
