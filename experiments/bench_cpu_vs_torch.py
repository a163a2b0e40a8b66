"""ResNet-18 train step (and train-mode forward) on the CPU: Flax/JAX vs PyTorch, one run,
plain and DBB networks.

    python experiments/bench_cpu_vs_torch.py --batch 32 --res 64 --steps 5 --repeats 2 [--blocks plain,dbb,orepa]

Both sides: the same architecture (the official DBB repository's ResNet-18: 7x7/2 stem +
max pool, 4 stages of 2 basic blocks, 1000 classes), float32, SGD momentum, softmax
cross-entropy, NHWC for JAX and NCHW for PyTorch (their native layouts). ``--blocks``: the
conv-BN layers as plain conv-BN, as DBBs, or (JAX only) as online DBBs (``orepa``, whose
PyTorch counterpart is the DBB, timed once for both: both train the same deploy network). The PyTorch
DBB is written here with the official module names and structure (BN-and-pad, the
identity-based 1x1, the average-pool branch); before timing, it loads the golden file
``../shared/parity/dbb_resnet18_w025.npz`` (made by running the official code) and must
reproduce its eval-mode output. JAX runs the training loop's own step
(``nas_jax.train.step``) on one device, with XLA's default passes (``jax_xla_default``,
plain only) and with the loop's CPU default (``jax``: no algebraic simplifier). Timed
steps follow a warm-up step; the repeats alternate the frameworks so the machine's load
hits both alike. Prints one JSON line per measurement and a summary with the JAX / PyTorch
ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

TORCH_BLOCK = {"plain": "plain", "dbb": "dbb", "orepa": "dbb"}  # the PyTorch network each JAX block is timed against
PARITY_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "parity", "dbb_resnet18_w025.npz")


def torch_modules():
    """The PyTorch ResNet-18 with plain conv-BN or DBB layers, official names."""
    import torch
    import torch.nn as tnn
    import torch.nn.functional as F

    class ConvBN(tnn.Module):
        def __init__(self, cin, cout, k, stride, padding, groups=1):
            super().__init__()
            self.conv = tnn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False)
            self.bn = tnn.BatchNorm2d(cout)

        def forward(self, x):
            return self.bn(self.conv(x))

    class BNAndPad(tnn.Module):
        """BN, then a border filled with the BN's output for a zero input (running stats)."""
        def __init__(self, channels, pad):
            super().__init__()
            self.bn, self.pad = tnn.BatchNorm2d(channels), pad

        def forward(self, x):
            y = self.bn(x)
            if self.pad == 0:
                return y
            bn = self.bn
            fill = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).view(1, -1, 1, 1)
            p = self.pad
            y = F.pad(y, [p] * 4)
            y[:, :, :p, :] = fill
            y[:, :, -p:, :] = fill
            y[:, :, :, :p] = fill
            y[:, :, :, -p:] = fill
            return y

    class IdentityBased1x1(tnn.Conv2d):
        def __init__(self, channels, groups):
            super().__init__(channels, channels, 1, groups=groups, bias=False)
            tnn.init.zeros_(self.weight)
            eye = torch.zeros(channels, channels // groups, 1, 1)
            eye[torch.arange(channels), torch.arange(channels) % (channels // groups)] = 1.0
            self.register_buffer("eye", eye, persistent=False)

        def forward(self, x):
            return F.conv2d(x, self.weight + self.eye, groups=self.groups)

    class DBB(tnn.Module):
        def __init__(self, cin, cout, k, stride, padding, groups=1):
            super().__init__()
            self.dbb_origin = ConvBN(cin, cout, k, stride, padding, groups)
            self.dbb_avg = tnn.Sequential()
            if groups < cout:
                self.dbb_1x1 = ConvBN(cin, cout, 1, stride, 0, groups)
                self.dbb_avg.add_module("conv", tnn.Conv2d(cin, cout, 1, 1, 0, groups=groups, bias=False))
                self.dbb_avg.add_module("bn", BNAndPad(cout, padding))
                self.dbb_avg.add_module("avg", tnn.AvgPool2d(k, stride, 0))
            else:
                self.dbb_1x1 = None
                self.dbb_avg.add_module("avg", tnn.AvgPool2d(k, stride, padding))
            self.dbb_avg.add_module("avgbn", tnn.BatchNorm2d(cout))
            internal = cin if groups < cout else 2 * cin
            self.dbb_1x1_kxk = tnn.Sequential()
            if internal == cin:
                self.dbb_1x1_kxk.add_module("idconv1", IdentityBased1x1(cin, groups))
            else:
                self.dbb_1x1_kxk.add_module("conv1", tnn.Conv2d(cin, internal, 1, 1, 0, groups=groups, bias=False))
            self.dbb_1x1_kxk.add_module("bn1", BNAndPad(internal, padding))
            self.dbb_1x1_kxk.add_module("conv2", tnn.Conv2d(internal, cout, k, stride, 0, groups=groups, bias=False))
            self.dbb_1x1_kxk.add_module("bn2", tnn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.dbb_origin(x) + self.dbb_avg(x) + self.dbb_1x1_kxk(x)
            return out if self.dbb_1x1 is None else out + self.dbb_1x1(x)

    def layer(block, cin, cout, k, stride):
        return (DBB if block == "dbb" and 1 < k < 7 else ConvBN)(cin, cout, k, stride, k // 2)

    class Basic(tnn.Module):
        def __init__(self, block, cin, cout, stride):
            super().__init__()
            self.conv1 = layer(block, cin, cout, 3, stride)
            self.conv2 = layer(block, cout, cout, 3, 1)
            self.shortcut = layer(block, cin, cout, 1, stride) if stride != 1 or cin != cout else tnn.Identity()

        def forward(self, x):
            return (self.conv2(self.conv1(x).relu()) + self.shortcut(x)).relu()

    class Stem(tnn.Module):
        def __init__(self, block, cout):
            super().__init__()
            self.conv1 = layer(block, 3, cout, 7, 2)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)

        def forward(self, x):
            return self.maxpool(self.conv1(x).relu())

    class ResNet18(tnn.Module):
        def __init__(self, block, num_classes, width):
            super().__init__()
            widths = [int(c * width) for c in (64, 128, 256, 512)]
            self.stage0 = Stem(block, widths[0])
            cin = widths[0]
            for s, cout in enumerate(widths):
                blocks = []
                for i in range(2):
                    blocks.append(Basic(block, cin, cout, 2 if (i == 0 and s > 0) else 1))
                    cin = cout
                setattr(self, f"stage{s + 1}", tnn.Sequential(*blocks))
            self.linear = tnn.Linear(cin, num_classes)

        def forward(self, x):
            for s in range(5):
                x = getattr(self, f"stage{s}")(x)
            return self.linear(x.mean(dim=(2, 3)))

    return ResNet18


def check_torch_dbb_against_the_official_output() -> float:
    """Loads the golden file's official state_dict into the PyTorch DBB ResNet-18 (x0.25,
    10 classes, strict) and returns the relative L2 error of its eval output."""
    import torch

    golden = np.load(PARITY_FILE)
    model = torch_modules()("dbb", 10, 0.25).eval()
    state = {k[3:]: torch.from_numpy(golden[k]) for k in golden.files if k.startswith("sd/")}
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        y = model(torch.from_numpy(golden["x"])).numpy().astype(np.float64)
    expected = golden["y_eval"].astype(np.float64)
    return float(np.linalg.norm(y - expected) / np.linalg.norm(expected))


def time_steps(step, steps: int) -> float:
    """Images per second over ``steps`` calls of ``step()`` after one warm-up call
    (``step`` blocks until its result is ready)."""
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def torch_runners(batch: int, res: int, num_classes: int, block: str):
    """PyTorch eager with its default (all cores) intra-op threads; ``block`` plain or dbb."""
    import torch

    torch.manual_seed(0)
    model = torch_modules()(block, num_classes, 1.0).train()
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


def jax_runners(batch: int, res: int, num_classes: int, block: str, skip_algsimp: bool):
    import jax

    from nas_jax.common import compiler_options
    from nas_jax.models import create_model
    from nas_jax.train.bench import synthetic_setup
    from nas_jax.train.step import create_mesh, jit_train_step, train_step_fn
    from nas_jax.train.task import ClassificationTask

    mesh = create_mesh(jax.devices()[:1])
    task = ClassificationTask(create_model("resnet18", block=block, num_classes=num_classes))
    data, tx, state = synthetic_setup(task, batch, res, num_classes, mesh)
    holder = [state]
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
    "jax_xla_default": lambda b, r, n, block: jax_runners(b, r, n, block, skip_algsimp=False),
    "jax": lambda b, r, n, block: jax_runners(b, r, n, block, skip_algsimp=True),
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
    parser.add_argument("--blocks", default="plain", help="comma-separated: plain, dbb, orepa")
    args = parser.parse_args()
    blocks = args.blocks.split(",")
    if "torch" in args.frameworks and ("dbb" in blocks or "orepa" in blocks):
        error = check_torch_dbb_against_the_official_output()
        print(json.dumps({"check": "PyTorch DBB ResNet-18 vs the official output (golden file)",
                          "rel_l2": error}), flush=True)
        if error > 1e-5:
            raise SystemExit(f"the PyTorch DBB does not reproduce the official output (rel L2 {error:.2e})")
    runners = {}
    for block in blocks:
        for framework in args.frameworks.split(","):
            if framework == "jax_xla_default" and block != "plain":
                continue  # the before/after of the compiler options is a plain-network figure
            # PyTorch times the online DBB's counterpart, the DBB, once for both
            timed = TORCH_BLOCK[block] if framework == "torch" else block
            if (framework, timed) not in runners:
                runners[(framework, timed)] = BUILDERS[framework](args.batch, args.res, args.num_classes, timed)
    rates = {}
    for repeat in range(args.repeats):
        for (framework, block), modes in runners.items():
            for mode, step in modes.items():
                rate = args.batch * time_steps(step, args.steps)
                rates.setdefault((framework, block, mode), []).append(rate)
                print(json.dumps({"framework": framework, "block": block, "mode": mode, "repeat": repeat,
                                  "images_per_s": round(rate, 2)}), flush=True)
    medians = {key: statistics.median(values) for key, values in rates.items()}
    for (framework, block, mode), rate in medians.items():
        torch_rate = medians.get(("torch", TORCH_BLOCK[block], mode))
        ratio = f"  {rate / torch_rate:.2f}x PyTorch" if torch_rate and framework != "torch" else ""
        print(f"{framework:16s} {block:6s} {mode:8s} median {rate:8.1f} images/s{ratio}  "
              f"(batch {args.batch}, {args.res}x{args.res}, float32)")


if __name__ == "__main__":
    main()
