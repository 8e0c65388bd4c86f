#!/usr/bin/env bash
# CI's second leg: codelsr on CPython 3.13, in its own virtual environment (.venv313).
#
# It installs the project as a user would (`pip install .`, not editable) with the test extra only:
# Seismic has no wheel for 3.13 (codelsr installs without it and searches exactly), and torch has no
# local CPU wheel for 3.13 on this project's machines, where pip would pull a multi-GB CUDA build
# instead; so the tests that need torch, the eval extra or Seismic skip, each saying why (-rs).
# Then the README's index and search on this repository, then the whole test suite.
# PYTHON313=/path/to/python3.13 picks the interpreter; otherwise python3.13 on PATH, then pyenv's.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python313() {
  local candidate
  for candidate in "${PYTHON313:-}" python3.13 "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3.13; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "ci_py313: no CPython 3.13 found (set PYTHON313=/path/to/python3.13)" >&2
  return 1
}

PY313=$(find_python313)
if [ ! -x .venv313/bin/python ]; then
  "$PY313" -m venv .venv313
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv313/bin/python -m pip install -q ".[test]" 2>&1 | grep -v -e "^WARNING: Location" -e "is ignored: it is neither" || true
.venv313/bin/python - <<'EOF'
import importlib.util, platform, sys
import codelsr
from codelsr.index.backends import BACKENDS

assert sys.version_info[:2] == (3, 13), sys.version
# The guard this leg exists for: nothing in `.[test]` may have pulled torch.
assert importlib.util.find_spec("torch") is None, "torch was installed on the 3.13 leg"
print(f"ci_py313: {platform.python_implementation()} {platform.python_version()}, codelsr {codelsr.__version__} "
      f"from {codelsr.__file__}, seismic available: {BACKENDS['seismic'].available()}")
EOF

# The README's first command, on 3.13: index this repository and search it (a scratch index home).
export CODELSR_HOME="${CODELSR_HOME:-$(mktemp -d)}"
.venv313/bin/codelsr index .
.venv313/bin/codelsr search "publish a new index generation atomically" --repo . -k 3
# The shipped model with no extras installed (issue 19): ONNX Runtime and tokenizers, never torch.
.venv313/bin/codelsr index . --encoder hybrid-code-tiny --foreground
.venv313/bin/codelsr search "publish a new index generation atomically" --repo . -k 3 --encoder hybrid-code-tiny

.venv313/bin/python -m pytest -q -p no:cacheprovider -rs
