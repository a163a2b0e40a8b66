"""The training loop's cost per step against a bare loop of the same compiled step.

    python experiments/bench_loop_overhead.py --steps 50 --repeats 2

Same model, batch, optimiser and compiled step (``nas_jax.train.step``) both ways. The
bare loop feeds one device-resident batch; the loop (``nas_jax.train.train`` on
synthetic data, no checkpoint or evaluation inside the timed window) also fetches, shards
and transfers a host batch each step and logs. The loop is timed between two logging
points (where it syncs), the bare loop between two ``block_until_ready``. Alternates the
two ``--repeats`` times; prints JSON lines and the median overhead. On a loaded machine
the two timings are noisy, so it also reports the loop's host work per step measured
alone (fetch + shard + transfer of a batch), which bounds the overhead from above when
dispatch is asynchronous.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import jax

from nas_jax.common import compiler_options
from nas_jax.train import ClassificationTask, default_config, train
from nas_jax.train.run import Run, model_from_config, pipeline_from_config
from nas_jax.train.optim import create_optimizer
from nas_jax.train.step import create_mesh, create_train_state, jit_train_step, shard_batch, train_step_fn


class TimedTask(ClassificationTask):
    """Records ``(step, time)`` at every logging point."""

    def __init__(self, model):
        super().__init__(model)
        self.log_times = {}

    def on_log(self, state, step, metrics):
        self.log_times[step] = time.perf_counter()


def make_config(args):
    c = default_config()
    c.model, c.width, c.dataset, c.image_size = args.model, args.width, "synthetic", args.res
    c.batch_size, c.eval_batch_size, c.num_steps = args.batch, args.batch, args.warmup + args.steps
    c.log_every, c.checkpoint_every = args.warmup, 10 ** 9
    return c


def loop_seconds(config, args) -> float:
    task = TimedTask(model_from_config(config, config.num_classes))
    with tempfile.TemporaryDirectory() as workdir:
        train(Run(config, workdir), task, progress_bar=False)
    times = task.log_times
    return times[args.warmup + args.steps] - times[args.warmup]


def bare_seconds(config, args) -> float:
    mesh = create_mesh()
    task = ClassificationTask(model_from_config(config, config.num_classes))
    tx, learning_rate_fn = create_optimizer(config, config.num_steps)
    host = next(pipeline_from_config(config, "train").train_batches(config.batch_size, 0))
    state = create_train_state(task, tx, 0, host, mesh)
    step = jit_train_step(train_step_fn(task, tx, learning_rate_fn), mesh,
                          compiler_options(config.cpu_skip_algsimp))
    batch, key = shard_batch(host, mesh), jax.random.PRNGKey(0)
    for _ in range(args.warmup):
        state, metrics = step(state, batch, key)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(args.steps):
        state, metrics = step(state, batch, key)
    jax.block_until_ready(metrics)
    return time.perf_counter() - start


def host_seconds_per_step(config, args) -> float:
    """Seconds per step of the loop's host work: next batch, shard, wait for the transfer."""
    mesh = create_mesh()
    batches = pipeline_from_config(config, "train").train_batches(config.batch_size, 0)
    start = time.perf_counter()
    for _ in range(args.steps):
        jax.block_until_ready(shard_batch(next(batches), mesh))
    return (time.perf_counter() - start) / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    config = make_config(args)
    overheads = []
    for repeat in range(args.repeats):
        bare, loop = bare_seconds(config, args), loop_seconds(config, args)
        host = host_seconds_per_step(config, args)
        overheads.append(loop / bare - 1)
        print(json.dumps({"repeat": repeat, "bare_steps_per_s": args.steps / bare,
                          "loop_steps_per_s": args.steps / loop, "overhead": loop / bare - 1,
                          "host_ms_per_step": 1000 * host, "host_share": host * args.steps / bare}), flush=True)
    print(f"{args.model} x{args.width} {args.res}px batch {args.batch} on {jax.device_count()} "
          f"{jax.devices()[0].device_kind}: loop overhead median {100 * statistics.median(overheads):+.1f}% "
          f"({args.repeats} repeats of {args.steps} steps)")


if __name__ == "__main__":
    main()
