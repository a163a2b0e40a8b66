"""Every convolution of a zoo network, forward and backward, on XLA:CPU vs PyTorch (oneDNN):
where the plain train step's gap to PyTorch lies, and whether an XLA flag closes it.

    python experiments/bench_conv_vs_torch.py --model resnet18 --batch 32 --res 64 \
        [--xla-flags= --xla-flags=--xla_cpu_use_xnnpack=true --xla-flags=--xla_cpu_use_onednn=true]

The convolutions are read from the plain network's own jaxpr (``conv_general_dilated``:
input and kernel shapes, strides, padding, groups); equal ones are timed once and counted.
Per convolution: the forward, and the backward (the input gradient, except for the
network's input, plus the kernel gradient), each the median of ``--repeats`` calls after
two warm-ups. JAX compiles each as the training loop does on the CPU (no algebraic
simplifier); PyTorch times ``conv2d`` in NCHW under ``torch.no_grad`` and ``backward`` of
one recorded ``conv2d`` (graph retained). Each ``--xla-flags`` entry runs the JAX side in a
fresh process with that ``XLA_FLAGS`` (flags are read once per process); ``--rounds``
alternate every variant and PyTorch, and each figure is the median over the rounds, so
the machine's load hits all alike. Prints a markdown table and the totals, writes them to
``--out``.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time

import numpy as np

from results_io import write_results


def conv_shapes(model_name: str, batch: int, res: int, width: float) -> list:
    """``[(spec, count)]`` in network order: spec is ``{x, w, strides, padding, groups,
    input_grad}`` with NHWC input and HWIO kernel shapes."""
    import jax
    import jax.numpy as jnp

    from nas_jax.models import create_model

    model = create_model(model_name, block="plain", num_classes=1000, width=width)
    x = jnp.zeros((batch, res, res, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    image = jaxpr.jaxpr.invars[-1]
    counts = collections.OrderedDict()
    for eqn in jaxpr.jaxpr.eqns:
        if eqn.primitive.name != "conv_general_dilated":
            continue
        lhs, rhs = eqn.invars
        p = eqn.params
        if p["dimension_numbers"].lhs_spec != (0, 3, 1, 2) or p["dimension_numbers"].rhs_spec != (3, 2, 0, 1):
            raise ValueError(f"expected NHWC input and HWIO kernel, got {p['dimension_numbers']}")
        spec = (tuple(lhs.aval.shape), tuple(rhs.aval.shape), tuple(p["window_strides"]),
                tuple(map(tuple, p["padding"])), p["feature_group_count"], lhs is not image)
        counts[spec] = counts.get(spec, 0) + 1
    return [(dict(zip(("x", "w", "strides", "padding", "groups", "input_grad"), spec)), n)
            for spec, n in counts.items()]


def _median_ms(run, repeats: int) -> float:
    run(), run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def time_jax(specs, repeats: int) -> list:
    """``[(forward_ms, backward_ms)]`` per spec, compiled as the train step is on the CPU."""
    import jax
    import jax.numpy as jnp

    from nas_jax.common import CPU_SKIP_ALGSIMP

    rng = np.random.default_rng(0)
    out = []
    for spec in specs:
        x = jnp.asarray(rng.standard_normal(spec["x"], np.float32))
        w = jnp.asarray(0.05 * rng.standard_normal(spec["w"], np.float32))

        def conv(x, w, spec=spec):
            return jax.lax.conv_general_dilated(x, w, spec["strides"], spec["padding"],
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                feature_group_count=spec["groups"])

        def backward(x, w, g, spec=spec):
            if spec["input_grad"]:
                return jax.vjp(conv, x, w)[1](g)
            return jax.vjp(lambda w: conv(x, w), w)[1](g)

        forward = jax.jit(conv).lower(x, w).compile(CPU_SKIP_ALGSIMP)
        g = jnp.asarray(rng.standard_normal(forward(x, w).shape, np.float32))
        grads = jax.jit(backward).lower(x, w, g).compile(CPU_SKIP_ALGSIMP)
        out.append((_median_ms(lambda: forward(x, w).block_until_ready(), repeats),
                    _median_ms(lambda: jax.block_until_ready(grads(x, w, g)), repeats)))
    return out


def time_torch(specs, repeats: int, threads: int) -> list:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    out = []
    for spec in specs:
        x = torch.tensor(rng.standard_normal(spec["x"], np.float32).transpose(0, 3, 1, 2).copy())
        w = torch.tensor(0.05 * rng.standard_normal(spec["w"], np.float32).transpose(3, 2, 0, 1).copy())
        x.requires_grad_(spec["input_grad"])
        w.requires_grad_(True)
        (top, bottom), (left, right) = spec["padding"]
        if top != bottom or left != right:
            raise ValueError(f"PyTorch's conv2d pads symmetrically, not {spec['padding']}")
        args = dict(stride=spec["strides"], padding=(top, left), groups=spec["groups"])
        y = F.conv2d(x, w, **args)
        g = torch.randn_like(y)

        def forward():
            with torch.no_grad():
                F.conv2d(x, w, **args)

        def backward():
            y.backward(g, retain_graph=True)
            x.grad = w.grad = None

        out.append((_median_ms(forward, repeats), _median_ms(backward, repeats)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of every variant and PyTorch")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch intra-op threads")
    parser.add_argument("--xla-flags", action="append",
                        help="an XLA_FLAGS value to compare, as --xla-flags=VALUE (empty: none); repeat it; "
                             "default: none only")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_conv_vs_torch.md"))
    parser.add_argument("--jax-only", action="store_true", help=argparse.SUPPRESS)  # one flag variant's child run
    args = parser.parse_args()

    args.xla_flags = args.xla_flags or [""]
    specs_counts = conv_shapes(args.model, args.batch, args.res, args.width)
    specs = [s for s, _ in specs_counts]
    if args.jax_only:
        print(json.dumps(time_jax(specs, args.repeats)))
        return
    rounds = {flags: [] for flags in args.xla_flags}
    torch_rounds = []
    for r in range(args.rounds):
        for flags in args.xla_flags:
            print(f"round {r + 1}/{args.rounds}: JAX, XLA_FLAGS={flags!r}", file=sys.stderr, flush=True)
            child = subprocess.run([sys.executable, __file__, "--jax-only", "--model", args.model, "--width",
                                    str(args.width), "--batch", str(args.batch), "--res", str(args.res),
                                    "--repeats", str(args.repeats)],
                                   env={**os.environ, "XLA_FLAGS": flags}, capture_output=True, text=True)
            if child.returncode:
                raise RuntimeError(f"the JAX run with XLA_FLAGS={flags!r} failed:\n{child.stderr[-2000:]}")
            rounds[flags].append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"round {r + 1}/{args.rounds}: PyTorch", file=sys.stderr, flush=True)
        torch_rounds.append(time_torch(specs, args.repeats, args.threads))
    jax_runs = {flags: np.median(runs, axis=0).tolist() for flags, runs in rounds.items()}
    torch_ms = np.median(torch_rounds, axis=0).tolist()

    names = [f"JAX `{flags or 'no XLA_FLAGS'}`" for flags in args.xla_flags]
    lines = [f"# Convolutions of {args.model} (width {args.width}, batch {args.batch}, {args.res}px, float32): "
             f"JAX on XLA:CPU vs PyTorch {args.threads} threads; forward / backward ms, medians of "
             f"{args.rounds} alternating rounds", "",
             "| input NHWC | kernel HWIO | stride | groups | count | " + " | ".join(names) + " | PyTorch |",
             "| --- " * (6 + len(names)) + "|"]
    for i, (spec, count) in enumerate(specs_counts):
        cells = [f"{jax_runs[f][i][0]:.2f} / {jax_runs[f][i][1]:.2f}" for f in args.xla_flags]
        cells.append(f"{torch_ms[i][0]:.2f} / {torch_ms[i][1]:.2f}")
        lines.append(f"| {spec['x']} | {spec['w']} | {spec['strides'][0]} | {spec['groups']} | {count} | "
                     + " | ".join(cells) + " |")
    counts = np.array([c for _, c in specs_counts])
    torch_total = counts @ np.array(torch_ms)
    lines += ["", "Totals over the network (each convolution times its count), ms:", "",
              "| XLA_FLAGS | JAX fwd | JAX bwd | PyTorch fwd | PyTorch bwd | JAX / PyTorch time, fwd + bwd |",
              "| --- | --- | --- | --- | --- | --- |"]
    totals = {}
    for flags, ms in jax_runs.items():
        fwd, bwd = counts @ np.array(ms)
        totals[flags] = {"jax_forward_ms": float(fwd), "jax_backward_ms": float(bwd)}
        lines.append(f"| `{flags or '(none)'}` | {fwd:.1f} | {bwd:.1f} | {torch_total[0]:.1f} | "
                     f"{torch_total[1]:.1f} | {(fwd + bwd) / torch_total.sum():.2f} |")
    doc = {"args": vars(args), "convolutions": [{**s, "count": c} for s, c in specs_counts], "jax_ms": jax_runs,
           "torch_ms": torch_ms, "jax_ms_rounds": rounds, "torch_ms_rounds": torch_rounds, "totals": totals,
           "torch_total_ms": {"forward": float(torch_total[0]), "backward": float(torch_total[1])}}
    write_results(args.out, "\n".join(lines) + "\n", doc)


if __name__ == "__main__":
    main()
