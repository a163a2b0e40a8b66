#!/usr/bin/env bash
# Train-step throughput of plain, DBB and online DBB (orepa) ResNet-18 at batch 256, 224x224, bf16, and the
# Graph PruningNet train step against the fixed-width MobileNetV2 one (batch 256, 224,
# bf16), on whatever accelerators JAX sees; one JSON line per run appended to $OUT
# (default bench_gpu.jsonl). Compare with DESIGN.md section 3 (H200: Flax plain 17,648
# img/s, naive DBB 6,446 img/s; MetaPruning's PruningNet 35 img/s against 7,161 for the
# fixed-width MobileNetV2), and the RepNAS search step against DBB / plain. Usage: experiments/bench_gpu.sh [OUT] [STEPS]; $PYTHON picks
# the interpreter (default python). On the lent GPU machine: experiments/device/gpu_bench.sh.
set -uo pipefail
OUT=${1:-bench_gpu.jsonl}
STEPS=${2:-50}
PY=${PYTHON:-python}
cd "$(dirname "$0")/.."
failed=0
bench() {  # one benchmark; its last line (the JSON) appended to $OUT; a failure does not stop the others
  "$PY" "$@" --steps "$STEPS" --json | tail -n 1 | tee -a "$OUT" || { echo "FAILED: $*" >&2; failed=1; }
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
for BLOCK in plain dbb orepa; do
  bench -m nas_jax.cli bench train --model resnet18 --block "$BLOCK" --batch 256 --res 224 --dtype bfloat16
done
bench -m nas_jax.cli bench infer --model resnet18 --block deploy --batch 256 --res 224 --dtype bfloat16
bench experiments/bench_pruning.py --model mobilenet_v2 --batch 256 --image-size 224 --dtype bfloat16
# the RepNAS search step against the DBB and plain steps of ResNet-18 (float32, batch 64, 224x224)
bench experiments/bench_repnas_step.py --model resnet18 --width 1.0 --batch 64 --res 224 --out ""
# the DBB layer as it is vs its input 1x1s as one conv (slower on the CPU: experiments/results/bench_dbb_forms.md)
bench experiments/bench_dbb_forms.py --batch 256
exit $failed
