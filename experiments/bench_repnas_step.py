"""Search-step throughput of RepNAS against a DBB and a plain train step of the same
backbone, in one run (same machine, same batch, the loop's own compiled steps).

Rows: the RepNAS search step with masked branches skipped (``nn.cond`` per branch) and
with all six branches computed and scaled by the mask (``dense``); the fixed sub-network's
step (a static mask); the same two steps with the online RepNAS block
(``block='repnas_online'``: the kept branches collapsed into one conv); the DBB, online DBB
(``orepa``) and plain train steps (``nas_jax.train.bench``), each with its images/s and
XLA's temporary buffers per device (the activations kept for the backward pass plus
workspace, from the compiled program's memory analysis). Prints a markdown table and
the ratios, and writes it to ``--out`` (none if empty); ``--json`` also prints one JSON
line (``search_images_per_s``: the faster exact search form, ``online_search_images_per_s``,
``dbb_images_per_s``, ``plain_images_per_s``, every row and the settings), the form
``experiments/bench_gpu.sh`` collects.

    python experiments/bench_repnas_step.py --model resnet18 --width 0.25 --batch 64 --res 32 [--json]
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np

from results_io import write_results

from nas_jax.common import compiler_options
from nas_jax.models import create_model
from nas_jax.repnas.searchable import find_searchable_layers
from nas_jax.repnas.masks import BranchBudget, kept_mask
from nas_jax.repnas.task import RepNASTask, SearchSchedule, alpha_optimizer
from nas_jax.train.bench import benchmark, measure_train_step
from nas_jax.train.task import ClassificationTask


def repnas_step(args, branch_compute: str, fixed: bool, block: str = "repnas") -> dict:
    """Compile and time the RepNAS train step of a ``block`` supernet: the search phase
    (mask resampled every step) or, with ``fixed``, the fixed sub-network of a random
    top-k mask."""
    model = create_model(args.model, block=block, num_classes=10, width=args.width)
    layers = find_searchable_layers(model, (1, args.res, args.res, 3))
    budget = BranchBudget(len(layers), args.kept_ratio)
    task = RepNASTask(model, layers, budget, SearchSchedule(0, 10 ** 6, 10 ** 6 + 1), alpha_optimizer(),
                      branch_compute)
    if fixed:
        mask = np.asarray(kept_mask(jax.random.normal(jax.random.key(1), (len(layers), 6)), budget)) > 0
        task = ClassificationTask(task.fixed_model(mask))
    return measure_train_step(task, args.batch, args.res, 10, args.steps, compiler_options(True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--kept-ratio", type=float, default=0.34)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_repnas_step.md"))
    parser.add_argument("--json", action="store_true", help="also print one JSON line of the figures")
    args = parser.parse_args()

    rows = {
        "RepNAS search, masked branches skipped (cond)": repnas_step(args, "cond", fixed=False),
        "RepNAS search, all six computed x mask (dense)": repnas_step(args, "dense", fixed=False),
        "RepNAS fixed sub-network (static mask)": repnas_step(args, "cond", fixed=True),
        "online RepNAS search (kernel-level mask)": repnas_step(args, "auto", False, "repnas_online"),
        "online RepNAS fixed sub-network": repnas_step(args, "auto", True, "repnas_online"),
    }
    for block in ("dbb", "orepa", "plain"):
        rows[f"{block.upper() if block != 'plain' else block} train step"] = benchmark(
            "train", args.model, block, args.batch, args.res, args.steps, "float32", 10, args.width)
    cond, dense = rows["RepNAS search, masked branches skipped (cond)"], rows[
        "RepNAS search, all six computed x mask (dense)"]
    dbb, plain = rows["DBB train step"], rows["plain train step"]
    online_search = rows["online RepNAS search (kernel-level mask)"]
    device = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
    lines = [f"# RepNAS search step vs DBB / plain ({args.model} width {args.width}, batch {args.batch}, "
             f"{args.res}px, float32, {device}, kept_ratio {args.kept_ratio}, {args.steps} timed steps)", "",
             "| step | images/s | ms/step | XLA temp MB | compile s |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {r['images_per_s']:.1f} | {r['step_ms']:.1f} | {r['temp_mb']:.1f} | {r['compile_s']:.1f} |"
              for name, r in rows.items()]
    lines += ["", f"- search step time, cond / dense: {cond['step_ms'] / dense['step_ms']:.2f}",
              f"- search step time, cond / DBB: {cond['step_ms'] / dbb['step_ms']:.2f}",
              f"- search step time, dense / DBB: {dense['step_ms'] / dbb['step_ms']:.2f}",
              f"- online search step time / DBB: {online_search['step_ms'] / dbb['step_ms']:.2f}",
              "- images/s over plain: " + ", ".join(
                  f"{name} {rows[row]['images_per_s'] / plain['images_per_s']:.2f}" for name, row in (
                      ("DBB", "DBB train step"), ("online DBB (OREPA)", "OREPA train step"),
                      ("RepNAS search (dense)", "RepNAS search, all six computed x mask (dense)"),
                      ("online RepNAS search", "online RepNAS search (kernel-level mask)"),
                      ("online RepNAS fixed", "online RepNAS fixed sub-network"))),
              "- XLA temp buffers over the exact form: " + ", ".join(
                  f"{name} {rows[online]['temp_mb'] / rows[exact]['temp_mb']:.2f}" for name, online, exact in (
                      ("online DBB / DBB", "OREPA train step", "DBB train step"),
                      ("online RepNAS search / dense search", "online RepNAS search (kernel-level mask)",
                       "RepNAS search, all six computed x mask (dense)")))]
    if args.out:
        write_results(args.out, "\n".join(lines) + "\n", {"args": vars(args), "device": device, "rows": rows})
    else:
        print("\n".join(lines))
    if args.json:
        search = max((cond, "cond"), (dense, "dense"), key=lambda r: r[0]["images_per_s"])
        print(json.dumps({
            "benchmark": "repnas_step", "search_images_per_s": search[0]["images_per_s"], "search_form": search[1],
            "online_search_images_per_s": online_search["images_per_s"],
            "dbb_images_per_s": dbb["images_per_s"], "plain_images_per_s": plain["images_per_s"],
            "orepa_images_per_s": rows["OREPA train step"]["images_per_s"],
            "search_over_dbb": search[0]["images_per_s"] / dbb["images_per_s"], "device": device,
            "settings": {k: v for k, v in vars(args).items() if k not in ("out", "json")},
            "rows": rows}))


if __name__ == "__main__":
    main()
