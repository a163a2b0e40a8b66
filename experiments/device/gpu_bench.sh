#!/usr/bin/env bash
# The device machine's command (the GPU machine lent to some sessions): installs the
# carried wheels of experiments/device/fetch_wheels.sh, then runs experiments/bench_gpu.sh
# with the image's python3 and JAX, its JSON lines and log into $OUT. From a session:
#   bash experiments/device/fetch_wheels.sh            # here, once
#   run(command="bash experiments/device/gpu_bench.sh", carry=[".whl"], timeout_s=600)
# then copy the returned bench_gpu.jsonl into experiments/results/.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-.}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
export PYTHONPATH=/tmp/site:$PWD PYTHON=python3 PYTHONUNBUFFERED=1
python3 -c "import jax; print(jax.__version__, jax.devices())" 2>&1 | tee "$OUT/log.txt"
bash experiments/bench_gpu.sh "$OUT/bench_gpu.jsonl" "${STEPS:-50}" 2>&1 | tee -a "$OUT/log.txt"
