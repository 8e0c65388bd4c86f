#!/usr/bin/env bash
# One-step setup: a virtual environment in .venv with codelsr and everything its tests, evals and
# SPLADE encoders need. Idempotent; a second run only checks.
#
# torch is pinned to 2.13.0 here: on this project's machines that version is a local CPU build, while
# an unpinned torch would pull a multi-GB CUDA build. Elsewhere, pip takes the 2.13.0 wheel that
# fits your platform (CUDA on Linux, MPS on macOS); to use another torch, install it first and run
# `pip install -e '.[splade,eval,test,milvus]'` yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "torch==2.13.0"
fi
python -m pip install -q -e ".[splade,export,eval,test,milvus]" 2>&1 | grep -v -e "^WARNING: Location" -e "is ignored: it is neither" || true
python -c "import codelsr, torch, seismic, tree_sitter_language_pack, mcp" || { echo "setup failed: imports" >&2; exit 1; }
