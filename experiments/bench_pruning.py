"""PruningNet train step vs the fixed-width train step of the same model, in one run.

Both go through the training infrastructure's compiled step (``train_step_fn`` jitted
over a mesh of all devices, SGD momentum): the fixed-width model with
``ClassificationTask``, the PruningNet with ``PruningTask`` (a new random width
configuration every step, one compilation). Prints images/s of each and their ratio.

    python experiments/bench_pruning.py --model mobilenet_v2 --batch 256 --image-size 224 --dtype bfloat16  # GPU
    python experiments/bench_pruning.py --model resnet18 --width 0.25 --batch 64 --image-size 32  # CPU
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from nas_jax.common import compiler_options
from nas_jax.pruning.task import PruningTask
from nas_jax.pruning.widths import WidthGrid
from nas_jax.models.network import ZooSpec
from nas_jax.train.config import default_config
from nas_jax.train.optim import create_optimizer
from nas_jax.train.step import create_mesh, create_train_state, jit_train_step, shard_batch, train_step_fn
from nas_jax.train.task import ClassificationTask


def images_per_second(task, batch, steps: int, warmup: int) -> float:
    mesh = create_mesh()
    config = default_config()
    tx, _ = create_optimizer(config, steps + warmup)
    state = create_train_state(task, tx, 0, batch, mesh)
    step = jit_train_step(train_step_fn(task, tx), mesh, compiler_options(config.cpu_skip_algsimp))  # as the loop
    sharded, rng = shard_batch(batch, mesh), jax.random.PRNGKey(1)
    for _ in range(warmup):
        state, metrics = step(state, sharded, rng)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, sharded, rng)
    jax.block_until_ready(metrics)
    return steps * len(batch["label"]) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--generator-hidden", type=int, default=32)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="compute dtype of both networks (parameters stay float32)")
    parser.add_argument("--json", action="store_true", help="end with the figures as one JSON line")
    args = parser.parse_args()
    spec = ZooSpec(args.model, args.num_classes, args.width, args.image_size)
    rng = np.random.default_rng(0)
    batch = {"image": rng.standard_normal((args.batch, args.image_size, args.image_size, 3), np.float32),
             "label": rng.integers(0, args.num_classes, args.batch).astype(np.int32)}
    pruning = PruningTask(spec, WidthGrid.arange(0.1, 1.0, 0.05), generator_hidden=args.generator_hidden,
                          dtype=args.dtype)
    generated = sum(int(np.prod(layer.kernel_shape)) for layer in pruning.graph.layers)
    print(f"{jax.devices()[0].device_kind} x{jax.device_count()}, {args.model} width {args.width}, "
          f"batch {args.batch}, {args.image_size}x{args.image_size}, {args.dtype}; PruningNet generates "
          f"{generated:,} weights from {args.generator_hidden} hidden units per layer")
    fixed = images_per_second(ClassificationTask(pruning.model), batch, args.steps, args.warmup)
    print(f"fixed-width train step: {fixed:,.1f} images/s")
    pruned = images_per_second(pruning, batch, args.steps, args.warmup)
    print(f"PruningNet train step (new random widths every step): {pruned:,.1f} images/s")
    print(f"ratio PruningNet / fixed-width: {pruned / fixed:.2f}")
    if args.json:
        print(json.dumps({"bench": "pruningnet_vs_fixed", **vars(args), "device_kind": jax.devices()[0].device_kind,
                          "devices": jax.device_count(), "fixed_images_per_s": fixed,
                          "pruningnet_images_per_s": pruned, "ratio": pruned / fixed}))


if __name__ == "__main__":
    main()
