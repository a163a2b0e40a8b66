"""Graph Pruning and conv-BN folding on linen models nobody here wrote: flaxmodels'
ResNet18 (at 1/8 of its published widths) and jax-resnet's ResNet18 at widths
(8, 16, 32, 64), as ``tests/external_models.py`` names them, on the embedded digits.

    python experiments/prune_external_models.py --workdir W [--steps 300]

Per model: ``prune train`` (``--steps`` steps), ``prune search --method evolution --budget
flops=0.5``, ``prune export`` (its float32 max |exported - masked|), then, from the same
PruningNet and widths in float64, the exported network against the masked forward
(relative L2) and ``fuse_params`` (conv-BN folding) on the exported network against the
exported network (relative L2), and ``train --config.init_from`` of the export for
``--steps`` steps (held-out test accuracy). Needs ``pip install -e '.[external]'`` and
``pip install --no-deps flaxmodels==0.1.3``. Resumes from each command's checkpoints.
Writes ``experiments/results/external_models.{md,json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))  # tests/external_models.py, tests/helpers.py
MODELS = {"flaxmodels_resnet18": ("flaxmodels 0.1.3", "ResNet18, 1/8 width, its own BatchNorm class"),
          "jax_resnet18": ("jax-resnet 0.0.4", "ResNet18 at (8, 16, 32, 64), no `train` keyword: adapter")}


def float64_checks(name: str, workdir: str, widths_path: str) -> dict:
    """Exported vs masked and folded vs exported, in float64, for the trained PruningNet of
    ``workdir`` at the widths of ``widths_path``."""
    import jax
    from helpers import as_float64, exported_and_masked_in_float64, rel_l2
    from nas_jax.pruning.widths import load_widths
    from nas_jax.pruning.workdir import restore_params
    from nas_jax.rep.fuse import fuse_params
    from external_models import COMPUTES_IN

    _, task, params = restore_params(workdir)
    ratios = load_widths(widths_path, task.graph, task.grid)
    images = jax.random.normal(jax.random.key(0), (3, 16) + task.graph.input_shape[1:])
    model, pruned, _, exported, reference = exported_and_masked_in_float64(
        task, params, ratios, images, computes_in=COMPUTES_IN[name])
    with jax.enable_x64(True):
        deploy_model, deploy = fuse_params(model, as_float64(pruned), input_shape=task.graph.input_shape)
        fused = deploy_model.apply(deploy, as_float64(images[2]), train=False)
    return {"exported_vs_masked_rel_l2": rel_l2(exported, reference), "logits_dtype": str(exported.dtype),
            "folded_vs_exported_rel_l2": rel_l2(fused, exported), "batch_norms_folded": len(deploy_model.folded)}


def run_model(name: str, workdir: str, steps: int) -> dict:
    from nas_jax.cli import main as nas_jax
    target = f"tests/external_models.py:{name}"
    prune, export, tune = (os.path.join(workdir, name, part) for part in ("prune", "export", "finetune"))
    row, start = {"model": name, "package": MODELS[name][0], "what": MODELS[name][1]}, time.time()

    def stage(command):
        if nas_jax(command) != 0:
            raise SystemExit(f"failed: nas-jax {' '.join(command)}")

    stage(["prune", "train", "--config", "experiments/configs/prune_digits.py", "--workdir", prune,
           f"--config.model={target}", "--config.width=1.0", f"--config.num_steps={steps}"])
    stage(["prune", "search", "--workdir", prune, "--method", "evolution", "--budget", "flops=0.5",
           "--config", "experiments/configs/prune_search_digits.py"])
    best = os.path.join(prune, "search", "evolution", "best.json")
    stage(["prune", "export", "--workdir", prune, "--widths", best, "--out", export])
    with open(os.path.join(export, "report.json")) as f:
        report = json.load(f)
    stage(["train", "--config", "experiments/configs/train_digits.py", "--workdir", tune,
           f"--config.init_from={export}", f"--config.num_steps={steps}", "--config.eval_split=test"])
    with open(os.path.join(tune, "metrics.jsonl")) as f:
        last_eval = [json.loads(line) for line in f if '"split": "test"' in line][-1]
    row.update({"flops_ratio": report["flops_ratio"], "params_ratio": report["params_ratio"],
                "export_max_abs_diff_float32": report["max_abs_diff_vs_masked"],
                "finetuned_test_accuracy": last_eval["accuracy"], **float64_checks(name, prune, best),
                "seconds": round(time.time() - start, 1)})
    return row


def main(argv=None) -> int:
    from results_io import write_results
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    os.chdir(REPO)  # the models are named by their path from the repository root
    rows = [run_model(name, workdir, args.steps) for name in MODELS]
    lines = ["| model | package | what ran | exported vs masked (float64 rel. L2) | folded vs exported | "
             "FLOPs ratio | params ratio | fine-tuned test acc. |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['package']} | {r['what']}: prune train {args.steps} steps, evolution "
                     f"search at flops=0.5, export, {r['batch_norms_folded']} BNs folded, fine-tune {args.steps} "
                     f"steps | {r['exported_vs_masked_rel_l2']:.1e} ({r['logits_dtype']} logits) | "
                     f"{r['folded_vs_exported_rel_l2']:.1e} | {r['flops_ratio']:.3f} | {r['params_ratio']:.3f} | "
                     f"{r['finetuned_test_accuracy']:.3f} |")
    text = ("External linen models through Graph Pruning on digits (`python experiments/prune_external_models.py "
            f"--workdir W --steps {args.steps}`)\n\n" + "\n".join(lines) + "\n")
    write_results(os.path.join(REPO, "experiments", "results", "external_models.md"), text,
                  {"steps": args.steps, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(REPO, "experiments"))
    sys.exit(main())
