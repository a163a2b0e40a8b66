"""Candidate-evaluation throughput of the width search, same candidates, same data, after
one warm-up call each (compilation excluded), in one run: ``--chunk`` candidates per
compiled call side by side under vmap (``vmap_width=chunk``), the same chunk one after
another inside the call (``vmap_width=1``; ``lax.map`` on accelerators, unrolled on the
CPU), and one call per candidate (``chunk=1``, a Python loop). Prints the three rates
and their ratios.

    python experiments/bench_prune_search_eval.py --workdir W [--candidates 32 --chunk 8]

``--workdir``: a ``nas-jax prune train`` work directory (its trained PruningNet, data and
settings); without it, a randomly initialised PruningNet of
``experiments/configs/prune_digits.py`` (throughput does not depend on the weights).
"""
import argparse
import os
import time

import jax
import numpy as np

from nas_jax.pruning.workdir import calibration_images, load_run_config, pruning_task, restore_params
from nas_jax.pruning.search.config import default_config
from nas_jax.pruning.search.evaluate import CandidateEvaluator
from nas_jax.pruning.search.context import holdout_batches
from nas_jax.pruning.search.space import Budget, SearchSpace
from nas_jax.train.run import pipeline_from_config

DIGITS_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "prune_digits.py")


def candidates_per_second(evaluator: CandidateEvaluator, channels: np.ndarray) -> float:
    evaluator(channels[:evaluator.chunk])  # compile
    start = time.perf_counter()
    evaluator(channels)
    return len(channels) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir")
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--chunk", type=int, default=8)
    args = parser.parse_args()
    if args.workdir:
        run, task, params = restore_params(args.workdir)
        config = run.config
    else:
        config = load_run_config(DIGITS_CONFIG)
        task = pruning_task(config)
        params = jax.jit(task.init)(jax.random.key(0), None)["params"]
    calibration = np.stack(calibration_images(config, pipeline_from_config(config, config.train_split)))
    holdout = holdout_batches(config, default_config().search)
    space = SearchSpace(task.graph, task.grid, Budget.parse("flops=1.0"))
    channels = space.channels(space.random(np.random.default_rng(0), args.candidates))
    rates = {}
    for name, chunk, width in ((f"chunk {args.chunk}, vmap {args.chunk}", args.chunk, args.chunk),
                               (f"chunk {args.chunk}, vmap 1", args.chunk, 1),
                               ("one call per candidate", 1, 1)):
        evaluator = CandidateEvaluator(task, params, calibration, holdout, chunk, width)
        rates[name] = candidates_per_second(evaluator, channels)
    print(f"{task.spec.name} width {task.spec.width}, {len(calibration)}x{calibration.shape[1]} calibration + "
          f"{int(holdout['mask'].sum())} held-out images per candidate, {len(channels)} candidates, "
          f"{jax.devices()[0].platform}")
    single = rates["one call per candidate"]
    for name, rate in rates.items():
        print(f"{name:<24} {rate:8.3f} candidates/s  ({rate / single:.2f}x one call per candidate)")


if __name__ == "__main__":
    main()
