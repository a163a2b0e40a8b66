"""ResNet-18 train step (and train-mode forward) on the CPU: Flax/JAX vs PyTorch, one run.

    python experiments/bench_cpu_vs_torch.py --batch 32 --res 64 --steps 5 --repeats 2

Both sides: the same architecture (7x7/2 stem + max pool, 4 stages of 2 basic blocks,
1000 classes), float32, SGD momentum, softmax cross-entropy, NHWC for JAX and NCHW for
PyTorch (their native layouts). JAX runs the training loop's own step
(``nas_jax.train.step``) on one device, with XLA's default passes
(``jax_xla_default``) and with the loop's CPU default (``jax``: no algebraic simplifier). Timed steps follow a warm-up step; the repeats
alternate the frameworks so the machine's load hits both alike. Prints one JSON line per
measurement and a summary.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def torch_resnet18(num_classes: int):
    import torch.nn as tnn

    class Basic(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.shortcut = tnn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.bn1(self.conv1(x)).relu()
            return (self.bn2(self.conv2(out)) + self.shortcut(x)).relu()

    layers = [tnn.Conv2d(3, 64, 7, 2, 3, bias=False), tnn.BatchNorm2d(64), tnn.ReLU(), tnn.MaxPool2d(3, 2, 1)]
    cin = 64
    for s, cout in enumerate((64, 128, 256, 512)):
        for i in range(2):
            layers.append(Basic(cin, cout, 2 if (i == 0 and s > 0) else 1))
            cin = cout
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(512, num_classes)]
    return tnn.Sequential(*layers)


def time_steps(step, steps: int) -> float:
    """Images per second over ``steps`` calls of ``step()`` after one warm-up call
    (``step`` blocks until its result is ready)."""
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def torch_runners(batch: int, res: int, num_classes: int):
    """PyTorch eager with its default (all cores) intra-op threads."""
    import torch

    torch.manual_seed(0)
    model = torch_resnet18(num_classes).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, res, res)
    y = torch.randint(0, num_classes, (batch,))

    def train_step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    def forward():
        with torch.no_grad():
            model(x)

    return {"train": train_step, "forward": forward}


def jax_runners(batch: int, res: int, num_classes: int, skip_algsimp: bool):
    import jax

    from nas_jax.common import compiler_options
    from nas_jax.models import create_model
    from nas_jax.train.config import default_config
    from nas_jax.train.optim import create_optimizer
    from nas_jax.train.step import create_mesh, create_train_state, jit_train_step, shard_batch, train_step_fn
    from nas_jax.train.task import ClassificationTask

    mesh = create_mesh(jax.devices()[:1])
    task = ClassificationTask(create_model("resnet18", num_classes=num_classes))
    rng = np.random.default_rng(0)
    host = {"image": rng.standard_normal((batch, res, res, 3), dtype=np.float32),
            "label": rng.integers(0, num_classes, batch).astype(np.int32)}
    data = shard_batch(host, mesh)
    tx, _ = create_optimizer(default_config(), 1000)
    holder = [create_train_state(task, tx, 0, host, mesh)]
    key = jax.random.PRNGKey(0)
    options = compiler_options(skip_algsimp)
    step = jit_train_step(train_step_fn(task, tx), mesh, options)
    forward_fn = jax.jit(lambda v, x: task.model.apply(v, x, train=True, mutable=["batch_stats"])[0],
                         compiler_options=options)

    def train_step():
        holder[0], metrics = step(holder[0], data, key)
        jax.block_until_ready(metrics)

    def forward():
        variables = {"params": holder[0].params, "batch_stats": holder[0].batch_stats}
        jax.block_until_ready(forward_fn(variables, data["image"]))

    return {"train": train_step, "forward": forward}


# "jax_xla_default": XLA's default passes (before); "jax": the loop's default on the CPU,
# skipping the algebraic simplifier (after; see nas_jax.common.compiler_options).
BUILDERS = {
    "jax_xla_default": lambda b, r, n: jax_runners(b, r, n, skip_algsimp=False),
    "jax": lambda b, r, n: jax_runners(b, r, n, skip_algsimp=True),
    "torch": torch_runners,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--frameworks", default=",".join(BUILDERS))
    args = parser.parse_args()
    runners = {f: BUILDERS[f](args.batch, args.res, args.num_classes) for f in args.frameworks.split(",")}
    rates = {}
    for repeat in range(args.repeats):
        for framework, modes in runners.items():
            for mode, step in modes.items():
                rate = args.batch * time_steps(step, args.steps)
                rates.setdefault((framework, mode), []).append(rate)
                print(json.dumps({"framework": framework, "mode": mode, "repeat": repeat,
                                  "images_per_s": round(rate, 2)}), flush=True)
    for (framework, mode), values in rates.items():
        print(f"{framework:16s} {mode:8s} median {statistics.median(values):8.1f} images/s  "
              f"(batch {args.batch}, {args.res}x{args.res}, float32)")


if __name__ == "__main__":
    main()
