"""Why does RepNAS's searched mask not beat a random one? What the alphas learn, and what
the fixed phase inherits.

A kept branch's alpha gradient is its branch's output-scale gradient (the sum over the
branch's last BN of gamma * dL/dgamma + beta * dL/dbeta, times sigmoid' of its rank; see
``tests/test_repnas.py``), so the alphas learn "grow / shrink this branch's output". One
hypothesis tested here: the part of that signal shared by a layer's branches says "grow /
shrink this residual block", a global top-k then leaves whole layers with no branch, and
that costs accuracy. Two budgets, each searched against a random mask at the same budget
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
fraction of kept alphas whose gradient is significant (``report.json`` ``alpha_gradient``),
Spearman's rho within layers between the alphas and the branches' learnt output scales at
the fix step, and the kept branches per primitive.

    python experiments/repnas_alpha_study.py                      # digits, ~45 min on 2 cores
    python experiments/repnas_alpha_study.py --mode full --budgets global --seeds 10  # MNIST, ~50 min

Writes ``experiments/results/repnas_alpha_study_{digits,mnist}.md`` and ``.json``; reruns
reuse finished runs under ``--workdir``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_io import mean_std, write_results  # noqa: E402
from search_sanity import MODES, RESULTS, log, random_mask_job, repnas_config, repnas_job, scratch_config  # noqa: E402

from nas_jax.rep.blocks import PRIMITIVES  # noqa: E402
from nas_jax.repnas.genotype import GENOTYPE_FILE  # noqa: E402
from nas_jax.repnas.run import SEARCH_CHECKPOINT_DIR  # noqa: E402
from nas_jax.repnas.searchable import OUTPUT_SCALES  # noqa: E402

BUDGETS = {"global": [], "cap2": ["--config.repnas.per_layer_cap=2"]}


def genotype_layers(directory: str) -> list:
    """The ``layers`` rows of ``directory``'s ``genotype.json``."""
    with open(os.path.join(directory, GENOTYPE_FILE)) as f:
        return json.load(f)["layers"]


def genotype_figures(layers: list) -> dict:
    """Empty layers, kept branches per primitive and the alphas' between-layer share of
    variance, from a genotype's ``layers`` rows."""
    alphas = np.array([layer["alphas"] for layer in layers], np.float64)
    centred = alphas - alphas.mean()
    between = alphas.shape[1] * np.sum((alphas.mean(axis=1) - alphas.mean()) ** 2)
    return {"empty_layers": sum(1 for layer in layers if not layer["kept"]),
            "kept_per_primitive": {name: sum(name in layer["kept"] for layer in layers) for name in PRIMITIVES},
            "between_layer_share": float(between / max(np.sum(centred ** 2), 1e-30))}


def alpha_scale_rank(layers: list, directory: str, fix_step: int) -> float:
    """Spearman's rho, within layers, between each branch's alpha (the genotype's ``layers``
    rows) and the RMS of its output scale (its last BatchNorm's gamma) at the fix step in
    ``directory``'s search checkpoint, over the branches kept in at least 4 search steps: do
    the alphas rank branches as the network's own weights do?"""
    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(os.path.join(directory, SEARCH_CHECKPOINT_DIR, str(fix_step), "state"))
    params = traverse_util.flatten_dict(state["params"], sep="/")
    alphas = np.array([layer["alphas"] for layer in layers], np.float64)
    scales = np.array([[np.sqrt(np.mean(np.square(params[f"{layer['path']}/{where}/scale"])))
                        for where in OUTPUT_SCALES["exact"]] for layer in layers])
    tested = np.asarray(state["extra"]["kept_steps"]) >= 4
    centre = lambda x: x - x.mean(axis=1, keepdims=True)  # noqa: E731
    return float(stats.spearmanr(centre(alphas)[tested], centre(scales)[tested])[0])


def one_seed(mode: str, budget: str, seed: int, workdir: str) -> dict:
    config = repnas_config(MODES[mode], seed, *BUDGETS[budget])
    searched_dir = os.path.join(workdir, f"{budget}_searched_{seed}")
    random_dir = os.path.join(workdir, f"{budget}_random_{seed}")
    log(f"{budget} seed {seed}: searched")
    searched = repnas_job(config, searched_dir)
    log(f"{budget} seed {seed}: random mask")
    random = random_mask_job(config, searched_dir, random_dir)
    scratch = {}
    for name, mask in (("searched", os.path.join(searched_dir, GENOTYPE_FILE)), ("random", "random")):
        log(f"{budget} seed {seed}: {name} mask from scratch")
        scratch[name] = repnas_job(scratch_config(config, mask),
                                   os.path.join(workdir, f"{budget}_{name}_scratch_{seed}"))
    searched_layers = genotype_layers(searched_dir)
    return {"seed": seed,
            "searched": searched["fused_test_accuracy"], "random": random["fused_test_accuracy"],
            "searched_scratch": scratch["searched"]["fused_test_accuracy"],
            "random_scratch": scratch["random"]["fused_test_accuracy"],
            "searched_genotype": genotype_figures(searched_layers),
            "random_genotype": genotype_figures(genotype_layers(random_dir)),
            "alpha_scale_rank": alpha_scale_rank(searched_layers, searched_dir, searched["fix_step"]),
            "alpha_gradient": searched["alpha_gradient"]}


def markdown(rows: dict, seeds, mode: str, command: str) -> str:
    dataset = MODES[mode]["dataset"]
    lines = [f"# RepNAS on {dataset}: what the alphas learn, global top-k vs two branches per layer", "",
             f"ResNet-18 x0.25, `experiments/configs/repnas_digits.py` ({mode} mode of "
             "`experiments/search_sanity.py`), seeds 0 to N-1 ("
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
              "| kept alphas with significant gradient | rho(alpha, branch output scale) within layers |",
              "|---|---|---|---|---|"]
    for budget, runs in rows.items():
        empty_s = [r["searched_genotype"]["empty_layers"] for r in runs]
        empty_r = [r["random_genotype"]["empty_layers"] for r in runs]
        share = [r["searched_genotype"]["between_layer_share"] for r in runs]
        significant = [r["alpha_gradient"]["fraction_significant"] for r in runs]
        rho = [r["alpha_scale_rank"] for r in runs]
        lines.append(f"| {budget} | {mean_std(empty_s, digits=1)} / {mean_std(empty_r, digits=1)} "
                     f"| {mean_std(share, digits=2)} | {mean_std(significant, digits=2)} | {mean_std(rho, digits=2)} |")
    lines += ["", "Kept branches per primitive, summed over seeds (searched / random):", "",
              "| budget | " + " | ".join(PRIMITIVES) + " |", "|---|" + "---|" * len(PRIMITIVES)]
    for budget, runs in rows.items():
        counts = [f"{sum(r['searched_genotype']['kept_per_primitive'][name] for r in runs)} / "
                  f"{sum(r['random_genotype']['kept_per_primitive'][name] for r in runs)}" for name in PRIMITIVES]
        lines.append(f"| {budget} | " + " | ".join(counts) + " |")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("quick", "full"), default="quick",
                        help="quick: digits; full: MNIST with search_sanity.py's full-mode schedule")
    parser.add_argument("--workdir", default=None, help="default /tmp/repnas_alpha_study_{mode}")
    parser.add_argument("--budgets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[10, 3],
                        help="seeds 0..N-1 per budget, in --budgets order (one number: the same for all)")
    args = parser.parse_args(argv)
    counts = args.seeds * len(args.budgets) if len(args.seeds) == 1 else args.seeds
    if len(counts) != len(args.budgets):
        parser.error(f"--seeds: give one count or one per budget ({len(args.budgets)})")
    seeds = dict(zip(args.budgets, counts))
    workdir = args.workdir or f"/tmp/repnas_alpha_study_{args.mode}"
    rows = {budget: [one_seed(args.mode, budget, seed, workdir) for seed in range(seeds[budget])]
            for budget in args.budgets}
    dataset = MODES[args.mode]["dataset"]
    command = " ".join(["python experiments/repnas_alpha_study.py", "--mode", args.mode, "--budgets", *args.budgets,
                        "--seeds", *map(str, counts)])
    write_results(os.path.join(RESULTS, f"repnas_alpha_study_{dataset}.md"), markdown(rows, seeds, args.mode, command),
                  {"seeds": seeds, "dataset": dataset, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
