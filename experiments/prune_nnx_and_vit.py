"""Graph Pruning on the models users write today, on the embedded digits: an NNX CNN
(``experiments/models/nnx_cnn.py``), a linen ViT and an NNX ViT (``experiments/models/vit.py``).

    python experiments/prune_nnx_and_vit.py --workdir W [--models nnx_cnn vit nnx_vit] [--dataset mnist]

For each: ``nas-jax prune train`` (its config ``experiments/configs/prune_<model>_digits.py``;
with ``--dataset mnist``, MNIST at batch 128), ``nas-jax prune search --method evolution
--budget flops=0.5``, ``nas-jax prune export`` of the best configuration (checked against the
masked forward), then fine-tuning of the exported network (``nas-jax train
--config.init_from``) and its test accuracy. The baselines that could beat it: the same
fine-tuning of the widest uniform widths within the budget, and the unpruned model trained from scratch for the
PruningNet's steps plus the fine-tuning steps. Every command resumes from its own outputs.
Writes ``experiments/results/prune_nnx_and_vit_<dataset>.{md,json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from nas_jax.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "experiments", "results")


def run(args) -> None:
    if main(args) != 0:
        raise SystemExit(f"failed: nas-jax {' '.join(args)}")


MNIST = ["--config.dataset=mnist", "--config.batch_size=128", "--config.log_every=100",
         "--config.checkpoint_every=400", "--config.warmup_steps=40", "--config.pruning.calibration_batches=20"]


def test_accuracy(workdir: str, init_from: str, steps: int, data: list, config_path: str = "") -> float:
    """``nas-jax train`` of ``init_from`` (or of the model of ``config_path`` from scratch, with
    its optimiser) for ``steps``; its last test accuracy."""
    config = config_path or os.path.join(REPO, "experiments", "configs", "train_digits.py")
    source = [f"--config.init_from={init_from}"] if init_from else []
    run(["train", "--config", config, "--workdir", workdir, *source, f"--config.num_steps={steps}",
         "--config.eval_split=test", f"--config.eval_every={steps}",
         *[a for a in data if "checkpoint" not in a and (config_path or "pruning" not in a)]])
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return [r for r in rows if r.get("split") == "test"][-1]["accuracy"]


def one_model(name: str, workdir: str, finetune_steps: int, dataset: str) -> dict:
    from nas_jax.pruning.cost import network_cost
    from nas_jax.pruning.widths import full_channels, group_channels, save_widths, uniform_ratios
    from nas_jax.pruning.workdir import restore_params
    from nas_jax.train.config import load_config

    work = os.path.join(workdir, dataset, name)
    data = MNIST if dataset == "mnist" else []
    config_path = os.path.join(REPO, "experiments", "configs", f"prune_{name}_digits.py")
    start = time.time()
    run(["prune", "train", "--config", config_path, "--workdir", work, *data])
    report = json.load(open(os.path.join(work, "report.json")))
    best = os.path.join(work, "search", "evolution", "best.json")
    if not os.path.exists(best):
        run(["prune", "search", "--workdir", work, "--method", "evolution", "--budget", "flops=0.5",
             "--config", os.path.join(REPO, "experiments", "configs", "prune_search_digits.py"),
             *(["--config.search.holdout_examples=2000"] if dataset == "mnist" else [])])
    export = os.path.join(work, "export")
    if not os.path.exists(os.path.join(export, "report.json")):
        run(["prune", "export", "--workdir", work, "--widths", best, "--out", export])
    exported = json.load(open(os.path.join(export, "report.json")))
    uniform = os.path.join(work, "uniform")
    if not os.path.exists(os.path.join(uniform, "report.json")):  # the widest uniform width within the budget
        task = restore_params(work)[1]
        full = network_cost(task.graph, full_channels(task.graph))["flops"]
        ratio = max(r for r in task.grid.ratios if network_cost(
            task.graph, group_channels(task.graph, uniform_ratios(task.graph, r)))["flops"] <= 0.5 * full)
        ratios = uniform_ratios(task.graph, ratio)
        for g, group in enumerate(task.graph.groups):  # whole attention heads
            heads = group.channels // group.unit
            ratios[g] = max(1, round(ratios[g] * heads)) / heads if group.unit > 1 else ratios[g]
        save_widths(os.path.join(work, "uniform.json"), task.graph, ratios)
        run(["prune", "export", "--workdir", work, "--widths", os.path.join(work, "uniform.json"), "--out", uniform])
    scratch_steps = load_config(config_path).num_steps + finetune_steps
    searched = json.load(open(best))
    return {"model": name, "dataset": dataset, "pruningnet_accuracy_by_width": report.get("accuracy_by_width", {}),
            "search_val_accuracy": searched["val_accuracy"], "flops_ratio": exported["flops_ratio"],
            "params_ratio": exported["params_ratio"], "max_abs_diff_vs_masked": exported["max_abs_diff_vs_masked"],
            "finetuned_accuracy": test_accuracy(os.path.join(work, "finetune"), export, finetune_steps, data),
            "uniform_flops_ratio": json.load(open(os.path.join(uniform, "report.json")))["flops_ratio"],
            "uniform_finetuned_accuracy": test_accuracy(os.path.join(work, "finetune_uniform"), uniform,
                                                        finetune_steps, data),
            "unpruned_scratch_accuracy": test_accuracy(os.path.join(work, "scratch"), "", scratch_steps, data,
                                                       config_path),
            "finetune_steps": finetune_steps, "scratch_steps": scratch_steps, "wall_s": time.time() - start}


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--models", nargs="*", default=["nnx_cnn", "vit", "nnx_vit"])
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    args = parser.parse_args()
    rows = [one_model(name, args.workdir, args.finetune_steps, args.dataset) for name in args.models]
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"prune_nnx_and_vit_{args.dataset}.json"), "w") as f:
        json.dump(rows, f, indent=1)
    lines = [f"{args.dataset}, test accuracy; fine-tuning {args.finetune_steps} steps; from scratch: the PruningNet's "
             "steps plus those", "",
             "| model | FLOPs ratio (searched) | params ratio | exported vs masked (max abs) | search val acc | "
             "searched, fine-tuned | uniform widths within the budget, fine-tuned | unpruned, from scratch | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['flops_ratio']:.3f} | {r['params_ratio']:.3f} | "
                     f"{r['max_abs_diff_vs_masked']:.1e} | {r['search_val_accuracy']:.3f} | "
                     f"{r['finetuned_accuracy']:.3f} | {r['uniform_finetuned_accuracy']:.3f} "
                     f"({r['uniform_flops_ratio']:.2f} FLOPs) | {r['unpruned_scratch_accuracy']:.3f} | "
                     f"{r['wall_s']:.0f} |")
    with open(os.path.join(RESULTS, f"prune_nnx_and_vit_{args.dataset}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main_()
