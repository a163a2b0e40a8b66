#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored) the wheels that nas_jax needs and the GPU machine's
# image lacks (it has jax, flax, optax, orbax, etils, absl-py, protobuf, PyYAML, psutil):
# grain, array-record, jraph, ml-collections, portpicker, at the versions installed in
# .venv, for CPython 3.12 on x86-64 Linux. Run it here (PyPI is reachable); the device
# machine reaches nothing. Then: experiments/device/gpu_bench.sh, with .whl carried.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
for pkg in grain array-record jraph ml-collections portpicker; do
  version=$(.venv/bin/pip show "$pkg" | awk '/^Version/{print $2}')
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "$pkg==$version"
done
ls -l .whl
