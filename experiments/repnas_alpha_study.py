"""Why does RepNAS's searched mask not beat a random one on digits? What the alphas learn.

A kept branch's alpha gradient is its branch's output-scale gradient (the sum over the
branch's last BN of gamma * dL/dgamma + beta * dL/dbeta, times sigmoid' of its rank; see
``tests/test_repnas.py``), so the alphas learn "grow / shrink this branch's output". The
part of that signal shared by a layer's branches says "grow / shrink this residual block",
and a global top-k over all layers then keeps whole layers at zero branches. Two
budgets, each over the same seeds, each searched against a random mask at the same budget
fixed at the same step from the same supernet weights (``search_sanity.random_mask_job``):

* ``global``: the paper's global top-k (k = int(L x 6 x 0.34) = 32 of 96);
* ``cap2``: ``repnas.per_layer_cap=2`` (k = 32 = 16 layers x 2: exactly two branches in
  every layer), so the search can only choose branch types, not how many per layer.

Each mask is also trained the whole schedule from scratch (``repnas.fixed_start=scratch``;
the searched one from its run's ``genotype.json``), the usual NAS evaluation: it separates
what the mask is worth from what the fixed phase inherits from the supernet.

Per run: fused test accuracy, layers left with no branch but the identity, the alphas'
between-layer share of variance (what part of the learned ranking is "which layer"
rather than "which branch"; about (L-1)/(N-1) = 0.16 for independent alphas) and the
fraction of kept alphas whose gradient is significant (``report.json`` ``alpha_gradient``).

    python experiments/repnas_alpha_study.py --workdir /tmp/alpha_study   # ~45 min, 2 cores

Writes ``experiments/results/repnas_alpha_study.md`` and ``.json``; reruns reuse finished
runs under ``--workdir``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_io import mean_std, write_results  # noqa: E402
from search_sanity import MODES, RESULTS, log, random_mask_job, repnas_config, repnas_job  # noqa: E402

from nas_jax.train.config import apply_overrides  # noqa: E402

BUDGETS = {"global": [], "cap2": ["--config.repnas.per_layer_cap=2"]}


def genotype_figures(directory: str) -> dict:
    """Empty layers and the alphas' between-layer share of variance from ``genotype.json``."""
    with open(os.path.join(directory, "genotype.json")) as f:
        layers = json.load(f)["layers"]
    alphas = np.array([layer["alphas"] for layer in layers], np.float64)
    centred = alphas - alphas.mean()
    between = alphas.shape[1] * np.sum((alphas.mean(axis=1) - alphas.mean()) ** 2)
    return {"empty_layers": sum(1 for layer in layers if not layer["kept"]),
            "between_layer_share": float(between / max(np.sum(centred ** 2), 1e-30))}


def one_seed(budget: str, seed: int, workdir: str) -> dict:
    config = repnas_config(MODES["quick"], seed, *BUDGETS[budget])
    searched_dir = os.path.join(workdir, f"{budget}_searched_{seed}")
    random_dir = os.path.join(workdir, f"{budget}_random_{seed}")
    log(f"{budget} seed {seed}: searched")
    searched = repnas_job(config, searched_dir)
    log(f"{budget} seed {seed}: random mask")
    random = random_mask_job(config, searched_dir, random_dir)
    scratch = {}
    for name, mask in (("searched", os.path.join(searched_dir, "genotype.json")), ("random", "random")):
        log(f"{budget} seed {seed}: {name} mask from scratch")
        scratch[name] = repnas_job(apply_overrides(config, [f"--config.repnas.fixed_mask={mask}",
                                                            "--config.repnas.fixed_start=scratch"]),
                                   os.path.join(workdir, f"{budget}_{name}_scratch_{seed}"))
    return {"seed": seed,
            "searched": searched["fused_test_accuracy"], "random": random["fused_test_accuracy"],
            "searched_scratch": scratch["searched"]["fused_test_accuracy"],
            "random_scratch": scratch["random"]["fused_test_accuracy"],
            "searched_genotype": genotype_figures(searched_dir), "random_genotype": genotype_figures(random_dir),
            "alpha_gradient": searched["alpha_gradient"]}


def markdown(rows: dict, seeds) -> str:
    lines = ["# RepNAS on digits: what the alphas learn, global top-k vs two branches per layer", "",
             "ResNet-18 x0.25, `experiments/configs/repnas_digits.py`, seeds 0 to N-1 ("
             + ", ".join(f"{budget}: N = {n}" for budget, n in seeds.items()) + "); mean ± sample std; "
             "test accuracy of the fused network. Random: a random mask under the same budget. Inherited: fixed at "
             "the fix step and trained on from the searched run's supernet weights (the paper); scratch: the mask "
             "trained the whole schedule from a fresh initialisation (`repnas.fixed_start=scratch`).", "",
             "| budget | start | searched | random | searched − random (paired) |", "|---|---|---|---|---|"]
    for budget, runs in rows.items():
        for start, suffix in (("inherited", ""), ("scratch", "_scratch")):
            searched = np.array([r["searched" + suffix] for r in runs])
            random = np.array([r["random" + suffix] for r in runs])
            diff = searched - random
            p = stats.ttest_rel(searched, random).pvalue if len(runs) > 1 and np.any(diff != diff[0]) else float("nan")
            lines.append(f"| {budget} | {start} | {mean_std(searched)} | {mean_std(random)} "
                         f"| {mean_std(diff)} (paired t p = {p:.2f}) |")
    lines += ["", "| budget | empty layers searched / random | alphas' between-layer share "
              "| kept alphas with significant gradient |", "|---|---|---|---|"]
    for budget, runs in rows.items():
        empty_s = [r["searched_genotype"]["empty_layers"] for r in runs]
        empty_r = [r["random_genotype"]["empty_layers"] for r in runs]
        share = [r["searched_genotype"]["between_layer_share"] for r in runs]
        significant = [r["alpha_gradient"]["fraction_significant"] for r in runs]
        lines.append(f"| {budget} | {mean_std(empty_s, digits=1)} / {mean_std(empty_r, digits=1)} "
                     f"| {mean_std(share, digits=2)} | {mean_std(significant, digits=2)} |")
    lines += ["", "Command: `python experiments/repnas_alpha_study.py`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="/tmp/repnas_alpha_study")
    parser.add_argument("--budgets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[10, 3],
                        help="seeds 0..N-1 per budget, in --budgets order (one number: the same for all)")
    args = parser.parse_args(argv)
    counts = args.seeds * len(args.budgets) if len(args.seeds) == 1 else args.seeds
    if len(counts) != len(args.budgets):
        parser.error(f"--seeds: give one count or one per budget ({len(args.budgets)})")
    seeds = dict(zip(args.budgets, counts))
    rows = {budget: [one_seed(budget, seed, args.workdir) for seed in range(seeds[budget])]
            for budget in args.budgets}
    write_results(os.path.join(RESULTS, "repnas_alpha_study.md"), markdown(rows, seeds),
                  {"seeds": seeds, "dataset": "digits", "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
