"""``nas-jax bench train|infer --model NAME --block KIND --batch N --res R --steps S
[--dtype float32|bfloat16] [--json]``: images/s of a train step or of inference."""
from __future__ import annotations

import argparse
import json

HELP = "benchmark a zoo model's train step or inference on synthetic data"


def add_arguments(parser) -> None:
    from nas_jax.models import BLOCK_KINDS
    from nas_jax.train.bench import DTYPES, MODES

    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--model", required=True)
    parser.add_argument("--block", default="plain", choices=BLOCK_KINDS)
    parser.add_argument("--batch", type=int, default=32, help="global batch")
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after one warm-up)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--cpu-skip-algsimp", action=argparse.BooleanOptionalAction, default=True,
                        help="on the CPU, compile without XLA's algebraic simplifier (nas_jax.train.step)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from nas_jax.train.bench import benchmark

    result = benchmark(args.mode, args.model, args.block, args.batch, args.res, args.steps, args.dtype,
                       args.num_classes, args.width, args.cpu_skip_algsimp)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.mode} {args.model} ({args.block}, {args.dtype}, batch {args.batch}, {args.res}px, "
              f"{result['devices']} x {result['device_kind']}): {result['images_per_s']:.1f} images/s, "
              f"{result['step_ms']:.1f} ms/step, compile {result['compile_s']:.1f} s, "
              f"XLA temp buffers {_mb(result['temp_mb'])} per device, "
              f"peak {result['peak_mem_mb']:.0f} MB ({result['peak_mem_source']})")
    return 0


def _mb(megabytes) -> str:
    return "n/a" if megabytes is None else f"{megabytes:.1f} MB"
