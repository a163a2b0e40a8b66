"""One DBB layer's train-mode forward + backward in two exact forms, one run: the block as
it is (``DiverseBranchBlock``: each branch its own conv and BatchNorm) and restructured
(the three 1x1 convs that read the input at stride 1, of ``dbb_1x1``, ``dbb_avg`` and the
identity-based ``dbb_1x1_kxk``, as one conv with their kernels concatenated on the output
axis, and their three BatchNorms as one over the concatenated channels). Both compute the
same function (checked here on the outputs and the gradients); the figure says whether
the restructuring is worth building into the block on this backend.

    python experiments/bench_dbb_forms.py [--batch 32] [--steps 20] [--json]

Shapes: ResNet-18's 3x3 stride-1 layers at 64x64 input (16x16 maps of 64 channels down to
2x2 maps of 512), width 1.0.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.common import compiler_options
from nas_jax.rep import transforms as T
from nas_jax.rep.blocks import BN_MOMENTUM, DiverseBranchBlock


def _conv(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(x, kernel, (strides, strides), ((padding, padding), (padding, padding)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _batch_norm(h, scale, bias):
    """Train-mode BatchNorm: ``(output, batch mean, biased batch variance)``."""
    mean = h.mean(axis=(0, 1, 2))
    var = jnp.square(h - mean).mean(axis=(0, 1, 2))
    return (h - mean) * jax.lax.rsqrt(var + T.BN_EPS) * scale + bias, mean, var


def _pad_with(h, fill):
    inside = np.pad(np.ones(h.shape[1:3], bool), 1)[None, :, :, None]
    return jnp.where(inside, jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0))), fill)


def restructured(params, stats, x):
    """The DBB's train-mode output (3x3, stride 1, groups 1, internal width = input width)
    with one conv and one BatchNorm for its three input 1x1s."""
    p, s = params, stats
    c = p["dbb_origin"]["conv"]["kernel"].shape[-1]
    kernels = [p["dbb_1x1"]["conv"]["kernel"], p["dbb_avg"]["conv"]["kernel"],
               T.identity_based(p["dbb_1x1_kxk"]["idconv1"]["kernel"])]
    norms = [p["dbb_1x1"]["bn"], p["dbb_avg"]["bn"]["bn"], p["dbb_1x1_kxk"]["bn1"]["bn"]]
    h, mean, var = _batch_norm(_conv(x, jnp.concatenate(kernels, -1), 1, 0),
                               jnp.concatenate([n["scale"] for n in norms]), jnp.concatenate([n["bias"] for n in norms]))
    one, avg, hidden = h[..., :c], h[..., c:2 * c], h[..., 2 * c:]

    def fill(norm, stat, part):
        """The BN-and-pad border: from the running statistics after this batch's update."""
        rows = slice(part * c, part * c + stat["mean"].shape[0])
        new_mean = BN_MOMENTUM * stat["mean"] + (1 - BN_MOMENTUM) * mean[rows]
        new_var = BN_MOMENTUM * stat["var"] + (1 - BN_MOMENTUM) * var[rows]
        return jax.lax.stop_gradient(norm["bias"] - new_mean * norm["scale"] / jnp.sqrt(new_var + T.BN_EPS))

    avg = jax.lax.reduce_window(_pad_with(avg, fill(p["dbb_avg"]["bn"]["bn"], s["dbb_avg"]["bn"]["bn"], 1)), 0.0,
                                jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), "VALID") / 9.0
    avg = _batch_norm(avg, p["dbb_avg"]["avgbn"]["scale"], p["dbb_avg"]["avgbn"]["bias"])[0]
    hidden = _pad_with(hidden, fill(p["dbb_1x1_kxk"]["bn1"]["bn"], s["dbb_1x1_kxk"]["bn1"]["bn"], 2))
    second = _batch_norm(_conv(hidden, p["dbb_1x1_kxk"]["conv2"]["kernel"], 1, 0),
                         p["dbb_1x1_kxk"]["bn2"]["scale"], p["dbb_1x1_kxk"]["bn2"]["bias"])[0]
    origin = _batch_norm(_conv(x, p["dbb_origin"]["conv"]["kernel"], 1, 1),
                         p["dbb_origin"]["bn"]["scale"], p["dbb_origin"]["bn"]["bias"])[0]
    return origin + one + avg + second


def time_grad(loss, params, steps):
    grad = jax.jit(jax.grad(loss), compiler_options=compiler_options(True))
    jax.block_until_ready(grad(params))
    start = time.perf_counter()
    for _ in range(steps):
        out = grad(params)
    jax.block_until_ready(out)
    return 1000 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="also print the rows as one JSON line at the end")
    args = parser.parse_args()
    rows = []
    print(f"# One DBB layer, train forward + backward, batch {args.batch}, float32, {jax.devices()[0].device_kind}")
    print("| maps | channels | block ms | restructured ms | speed-up | rel. L2 diff (out; all grads) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size, channels in ((16, 64), (8, 128), (4, 256), (2, 512)):
        block = DiverseBranchBlock(channels, 3, 1)
        x = jax.random.normal(jax.random.key(0), (args.batch, size, size, channels))
        v = block.init(jax.random.key(1), x)
        stats = jax.tree.map(lambda a: a + 0.5, v["batch_stats"])

        def block_loss(params):
            y, _ = block.apply({"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
            return jnp.square(y - 1.0).mean()

        def restructured_loss(params):
            return jnp.square(restructured(params, stats, x) - 1.0).mean()

        with jax.default_matmul_precision("highest"):
            y_block = block.apply({"params": v["params"], "batch_stats": stats}, x, train=True,
                                  mutable=["batch_stats"])[0]
            y_new = restructured(v["params"], stats, x)
            g_block, g_new = jax.grad(block_loss)(v["params"]), jax.grad(restructured_loss)(v["params"])
        flat_new, flat_block = (jnp.concatenate([a.ravel() for a in jax.tree.leaves(g)]) for g in (g_new, g_block))
        diff = max(float(jnp.linalg.norm(y_new - y_block) / jnp.linalg.norm(y_block)),
                   float(jnp.linalg.norm(flat_new - flat_block) / jnp.linalg.norm(flat_block)))
        block_ms = time_grad(block_loss, v["params"], args.steps)
        new_ms = time_grad(restructured_loss, v["params"], args.steps)
        print(f"| {size}x{size} | {channels} | {block_ms:.2f} | {new_ms:.2f} | {block_ms / new_ms:.2f} | {diff:.1e} |",
              flush=True)
        rows.append({"maps": size, "channels": channels, "block_ms": block_ms, "restructured_ms": new_ms,
                     "rel_l2_diff": diff})
    if args.json:
        print(json.dumps({"benchmark": "dbb_forms", "batch": args.batch, "device": jax.devices()[0].device_kind,
                          "rows": rows}))


if __name__ == "__main__":
    main()
