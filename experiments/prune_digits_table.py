"""README table on the digits proxy: uniform, random, evolutionary and RL width search at
FLOPs budgets, several seeds, each best configuration exported and fine-tuned the same
short way, then evaluated on the test split. Writes a Markdown table.

    nas-jax prune train --config experiments/configs/prune_digits.py --workdir W
    python experiments/prune_digits_table.py --workdir W --seeds 0 1 2 --budgets 0.5 0.25 \\
        --evaluations 60 --finetune-steps 100 --out experiments/results/prune_digits.md

For each (budget, seed, method): ``search_workdir`` (search settings of
``experiments/configs/prune_search_digits.py``, ``--evaluations`` candidates ranked on the
validation split), ``export_from_workdir`` of its best.json, then ``nas-jax train``
(``experiments/configs/train_digits.py`` with ``init_from`` the export, ``--finetune-steps``
steps, evaluated on the test split). Every run lives under ``W/table/``. One PruningNet
(the one in W) serves every seed: the seeds vary the searches and the fine-tuning.
"""
import argparse
import json
import os

import numpy as np

from results_io import mean_std

from nas_jax.cli import main as nas_jax
from nas_jax.pruning.workdir import export_from_workdir
from nas_jax.pruning.search.searchers import METHODS
from nas_jax.pruning.search.context import SearchContext
from nas_jax.train.config import apply_overrides, load_config

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def finetune_test_accuracy(export_dir: str, workdir: str, steps: int, seed: int) -> float:
    """Test accuracy after ``steps`` steps of ``train_digits.py`` from the exported network."""
    status = nas_jax(["train", "--config", os.path.join(CONFIGS, "train_digits.py"), "--workdir", workdir,
                      f"--config.init_from={export_dir}", f"--config.num_steps={steps}", f"--config.seed={seed}",
                      "--config.eval_split=test", f"--config.eval_every={steps}",
                      f"--config.warmup_steps={steps // 10}",
                      f"--config.checkpoint_every={steps}"])
    if status:
        raise RuntimeError(f"fine-tuning {export_dir} failed ({status})")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        evals = [m for m in map(json.loads, f) if m.get("split") == "test"]
    return evals[-1]["accuracy"]


def search_config(seed: int, evaluations: int):
    return apply_overrides(load_config(os.path.join(CONFIGS, "prune_search_digits.py")),
                           [f"--config.search.seed={seed}", f"--config.search.evaluations={evaluations}"]).search


def run_one(args, context: SearchContext, budget: float, seed: int, method: str) -> dict:
    directory = os.path.join(args.workdir, "table", f"flops={budget:g}", f"seed{seed}", method)
    best = context.search(method, f"flops={budget:g}", search_config(seed, args.evaluations),
                          os.path.join(directory, "search"))
    export_from_workdir(args.workdir, os.path.join(directory, "search", "best.json"), os.path.join(directory, "export"))
    test = finetune_test_accuracy(os.path.join(directory, "export"), os.path.join(directory, "finetune"),
                                  args.finetune_steps, seed)
    row = {"budget": budget, "seed": seed, "method": method, "flops_ratio": best["flops_ratio"],
           "val_accuracy": best["val_accuracy"], "test_accuracy": test, "wall_s": best["wall_s"],
           "evaluations": best["evaluations"]}
    print(json.dumps(row), flush=True)
    return row


def markdown(rows, args) -> str:
    """The table over the rows present (``seeds`` counts them, so a cut-short run says so)."""
    lines = [f"Digits proxy (ResNet-18 x0.25, 32x32): one PruningNet, {args.evaluations} evaluations per search "
             f"(uniform: 1), each best configuration exported and fine-tuned {args.finetune_steps} steps "
             "(train_digits.py). Mean ± sample std (ddof 1) over seeds. Held-out = digits validation split (PruningNet weights, "
             "BN recalibrated); test = test split after fine-tuning. Search wall-clock on 2 shared CPU cores; "
             "the first search of a run includes compiling the evaluator.", "",
             "| FLOPs budget | method | seeds | FLOPs ratio | held-out acc | test acc (fine-tuned) | search s |",
             "|---|---|---|---|---|---|---|"]
    for budget in args.budgets:
        for method in args.methods:
            group = [r for r in rows if r["budget"] == budget and r["method"] == method]
            if group:
                lines.append(f"| {budget:g} | {method} | {len(group)} | "
                             f"{mean_std([r['flops_ratio'] for r in group])} | "
                             f"{mean_std([r['val_accuracy'] for r in group])} | "
                             f"{mean_std([r['test_accuracy'] for r in group])} | "
                             f"{np.mean([r['wall_s'] for r in group]):.1f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a `nas-jax prune train` work directory (digits)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.25])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--evaluations", type=int, default=60)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--table-only", action="store_true", help="only write the table of the rows done so far")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "prune_digits.md"))
    args = parser.parse_args()
    rows_path = os.path.splitext(args.out)[0] + ".json"
    rows = []
    if os.path.isfile(rows_path):  # a table run cut short goes on where it stopped
        with open(rows_path) as f:
            rows = json.load(f)
    done = {(r["budget"], r["seed"], r["method"]) for r in rows}
    context = None if args.table_only else SearchContext(args.workdir, search_config(0, args.evaluations))
    for seed in [] if args.table_only else args.seeds:
        for budget in args.budgets:
            for method in args.methods:
                if (budget, seed, method) not in done:
                    rows.append(run_one(args, context, budget, seed, method))
                    with open(rows_path, "w") as f:
                        json.dump(rows, f, indent=1)
    with open(args.out, "w") as f:
        f.write(markdown(rows, args))
    print(markdown(rows, args))


if __name__ == "__main__":
    main()
