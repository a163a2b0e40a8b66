"""Inference of a fused (deploy) network against the plain conv-BN network it equals.

    python experiments/bench_deploy_vs_plain.py --model resnet18 --batch 16 --res 224 --rounds 10

The deploy network is ``fuse_params`` of a DBB model (one conv with bias per layer); the
plain one is conv + BatchNorm (eval mode). Both are compiled once, then timed a batch at
a time, alternating, ``--rounds`` times each, so load on a shared machine hits both alike;
prints the median images/s of each and their ratio as JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import numpy as np

from nas_jax.common import compiler_options
from nas_jax.models import create_model
from nas_jax.rep.fuse import fuse_params


def compiled_forward(model, variables, x, options):
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False), compiler_options=options)
    jax.block_until_ready(forward(variables, x))
    return lambda: jax.block_until_ready(forward(variables, x))


def init(model, x):
    key = jax.random.key(0, impl="rbg")
    return jax.jit(model.init).lower(key, x[:1]).compile({"xla_backend_optimization_level": 0})(key, x[:1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    x = jax.numpy.asarray(np.random.default_rng(0).standard_normal((args.batch, args.res, args.res, 3), np.float32))
    options = compiler_options(True)
    dbb = create_model(args.model, block="dbb")
    deploy_model, deploy_variables = fuse_params(dbb, init(dbb, x), input_shape=(1, args.res, args.res, 3))
    plain = create_model(args.model, block="plain")
    runners = {"plain": compiled_forward(plain, init(plain, x), x, options),
               "dbb_deploy": compiled_forward(deploy_model, deploy_variables, x, options)}
    seconds = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    rates = {name: args.batch / statistics.median(s) for name, s in seconds.items()}
    print(json.dumps({"model": args.model, "batch": args.batch, "res": args.res, "rounds": args.rounds,
                      "device": jax.devices()[0].device_kind, **{f"{k}_images_per_s": v for k, v in rates.items()},
                      "deploy_over_plain": rates["dbb_deploy"] / rates["plain"]}))


if __name__ == "__main__":
    main()
