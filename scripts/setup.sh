#!/usr/bin/env bash
# Creates .venv with nas_jax, its PyTorch interop extra and the test tools.
# torch is pinned first so pip takes the CPU build on disk, not a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[torch,dev]'
