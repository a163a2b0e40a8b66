"""Graph Pruning on the models users write today, on the embedded digits: an NNX CNN
(``experiments/models/nnx_cnn.py``), a linen ViT and an NNX ViT (``experiments/models/vit.py``).

    python experiments/prune_nnx_and_vit.py --workdir W [--models nnx_cnn vit nnx_vit]

For each: ``nas-jax prune train`` (its config ``experiments/configs/prune_<model>_digits.py``),
``nas-jax prune search --method evolution --budget flops=0.5``, ``nas-jax prune export`` of the
best configuration (checked against the masked forward), then 200 fine-tuning steps of the
exported network (``nas-jax train --config.init_from``) and its test accuracy. Every
command resumes from its own outputs. Writes ``experiments/results/prune_nnx_and_vit.{md,json}``.
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


def one_model(name: str, workdir: str, finetune_steps: int) -> dict:
    work = os.path.join(workdir, name)
    start = time.time()
    run(["prune", "train", "--config", os.path.join(REPO, "experiments", "configs", f"prune_{name}_digits.py"),
         "--workdir", work])
    train_s = time.time() - start
    report = json.load(open(os.path.join(work, "report.json")))
    best = os.path.join(work, "search", "evolution", "best.json")
    if not os.path.exists(best):
        run(["prune", "search", "--workdir", work, "--method", "evolution", "--budget", "flops=0.5",
             "--config", os.path.join(REPO, "experiments", "configs", "prune_search_digits.py")])
    export = os.path.join(work, "export")
    if not os.path.exists(os.path.join(export, "report.json")):
        run(["prune", "export", "--workdir", work, "--widths", best, "--out", export])
    exported = json.load(open(os.path.join(export, "report.json")))
    finetune = os.path.join(work, "finetune")
    run(["train", "--config", os.path.join(REPO, "experiments", "configs", "train_digits.py"), "--workdir", finetune,
         f"--config.init_from={export}", f"--config.num_steps={finetune_steps}", "--config.eval_split=test"])
    rows = [json.loads(line) for line in open(os.path.join(finetune, "metrics.jsonl"))]
    test = [r for r in rows if r.get("split") in ("test", "validation") and "accuracy" in r][-1]
    searched = json.load(open(best))
    return {"model": name, "pruningnet_accuracy_by_width": report.get("accuracy_by_width", {}),
            "search_val_accuracy": searched["val_accuracy"], "flops_ratio": exported["flops_ratio"],
            "params_ratio": exported["params_ratio"], "max_abs_diff_vs_masked": exported["max_abs_diff_vs_masked"],
            "finetuned_accuracy": test["accuracy"], "finetuned_split": test["split"],
            "finetune_steps": finetune_steps, "prune_train_wall_s": train_s, "wall_s": time.time() - start}


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--models", nargs="*", default=["nnx_cnn", "vit", "nnx_vit"])
    parser.add_argument("--finetune-steps", type=int, default=200)
    args = parser.parse_args()
    rows = [one_model(name, args.workdir, args.finetune_steps) for name in args.models]
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "prune_nnx_and_vit.json"), "w") as f:
        json.dump(rows, f, indent=1)
    lines = ["| model | FLOPs ratio | params ratio | exported vs masked (max abs) | search val acc | "
             "fine-tuned acc | wall s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['flops_ratio']:.3f} | {r['params_ratio']:.3f} | "
                     f"{r['max_abs_diff_vs_masked']:.1e} | {r['search_val_accuracy']:.3f} | "
                     f"{r['finetuned_accuracy']:.3f} ({r['finetuned_split']}, {r['finetune_steps']} steps) | "
                     f"{r['wall_s']:.0f} |")
    with open(os.path.join(RESULTS, "prune_nnx_and_vit.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main_()
