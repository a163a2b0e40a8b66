"""Why the sanity checks show no search beating random: how much do different choices
differ, against how much one choice differs between training seeds?

A search can only beat a random choice if choices differ by more than the noise of
training one. This script measures both spreads with everything else fixed:

* RepNAS (``experiments/configs/repnas_digits.py``, the main job): from seed 0's search
  (its checkpoint at the fix step), the searched mask trained with fixed-phase seeds
  ``0 .. N-1`` (data order and augmentation change; the starting weights do not), and
  ``N`` random masks under the same budget (``repnas.random_mask_seed`` 1 .. N) trained
  with seed 0. Test accuracy of each fused network.
* Graph Pruning (``experiments/configs/prune_digits.py``): the PruningNet of
  ``search_sanity.py`` and its 45-50% FLOPs ranking configurations; the first ``N`` of them
  fine-tuned with seed 0 (the ranking check's runs) and the first one with seeds
  ``0 .. N-1``. Test accuracy after ``finetune_steps``.

If choices spread no more than seeds do, the task at this scale cannot tell choices
apart, so no search can beat a random choice on it, and a rank correlation against
fine-tuned accuracy measures noise.

    python experiments/search_noise_floor.py --quick --n 10          # digits, about 15 minutes
    python experiments/search_noise_floor.py --parts pruning --n 10  # MNIST, about 5 minutes

Runs share ``search_sanity.py``'s work directory (default ``/tmp/search_sanity_{quick,full}``)
and reuse what is there. Writes ``experiments/results/search_noise_floor_{quick,full}.md``
and ``.json``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_io import mean_std, write_results  # noqa: E402
from search_sanity import (RESULTS, log, mode_arguments, open_mode, pruning_setup, ranked_finetune,  # noqa: E402
                           ranking_configurations, repnas_config, repnas_job, verdict)

from nas_jax.repnas.run import SEARCH_CHECKPOINT_DIR  # noqa: E402


def from_search_of(searched_dir: str, config, workdir: str) -> dict:
    """The RepNAS job of ``config`` started at the fix step of the search in ``searched_dir``."""
    if not os.path.exists(os.path.join(workdir, SEARCH_CHECKPOINT_DIR)):
        shutil.copytree(os.path.join(searched_dir, SEARCH_CHECKPOINT_DIR), os.path.join(workdir, SEARCH_CHECKPOINT_DIR))
    return repnas_job(config, workdir)


def repnas_spread(mode: dict, n: int, workdir: str) -> dict:
    base = os.path.join(workdir, "repnas", "seed0")
    searched_dir = os.path.join(base, "searched")
    log("RepNAS: seed 0's search")
    repnas_job(repnas_config(mode, 0), searched_dir)
    over_seeds, over_masks = [], []
    for seed in range(n):
        log(f"RepNAS: the searched mask, fixed-phase seed {seed}")
        directory = searched_dir if seed == 0 else os.path.join(workdir, "noise_floor", "searched", f"seed{seed}")
        over_seeds.append(from_search_of(searched_dir, repnas_config(mode, seed), directory)["fused_test_accuracy"])
    for mask_seed in range(1, n + 1):
        log(f"RepNAS: random mask {mask_seed}, seed 0")
        config = repnas_config(mode, 0, "--config.repnas.fixed_mask=random",
                               f"--config.repnas.random_mask_seed={mask_seed}")
        directory = os.path.join(workdir, "noise_floor", "random", f"mask{mask_seed}")
        over_masks.append(from_search_of(searched_dir, config, directory)["fused_test_accuracy"])
    return {"repnas_searched_over_seeds": over_seeds, "repnas_random_masks_seed0": over_masks}


def pruning_spread(mode: dict, n: int, workdir: str, configs: int) -> dict:
    prune_dir, _, space = pruning_setup(mode, workdir)
    choices = ranking_configurations(space, configs)[:n]
    over_configs = [ranked_finetune(prune_dir, workdir, space, i, choice, mode, 0) for i, choice in enumerate(choices)]
    over_seeds = [ranked_finetune(prune_dir, workdir, space, 0, choices[0], mode, seed) for seed in range(n)]
    return {"pruning_configurations_seed0": over_configs, "pruning_config0_over_seeds": over_seeds,
            "pruning_flops_ratio": [float(r) for r in space.cost_ratio(choices)]}


def spread_line(label: str, choices, seeds) -> str:
    """The two spreads, their ratio and the one-sided F-test p-value that choices spread
    more than seeds (equal variances under the null)."""
    a, b = np.asarray(choices, np.float64), np.asarray(seeds, np.float64)
    f = a.var(ddof=1) / b.var(ddof=1) if b.var(ddof=1) > 0 else float("inf")
    p = float(stats.f.sf(f, a.size - 1, b.size - 1))
    return (f"- {label}: choices spread (std) {a.std(ddof=1):.4f}, seeds {b.std(ddof=1):.4f}: ratio "
            f"{a.std(ddof=1) / b.std(ddof=1):.2f}, F-test p = {p:.3f} (one-sided: choices spread more); range "
            f"of choices {a.max() - a.min():.4f}, of seeds {b.max() - b.min():.4f}")


def markdown(result: dict, title: str) -> str:
    lines = [f"## {title}", "", f"Settings: `{json.dumps(result['settings'])}`", "",
             "| what varies | values | mean ± std |", "|---|---|---|"]
    rows = (("repnas_searched_over_seeds", "RepNAS: searched mask, fixed-phase seed 0..N-1"),
            ("repnas_random_masks_seed0", "RepNAS: random masks 1..N, seed 0"),
            ("pruning_config0_over_seeds", "Pruning: one configuration, fine-tuning seed 0..N-1"),
            ("pruning_configurations_seed0", "Pruning: N configurations at 45-50% FLOPs, seed 0"))
    for key, label in rows:
        if key in result:
            lines.append(f"| {label} | {', '.join(f'{v:.4f}' for v in result[key])} | "
                         f"{mean_std(result[key], digits=4)} |")
    lines.append("")
    if "repnas_random_masks_seed0" in result:
        lines.append(spread_line("RepNAS masks vs seeds", result["repnas_random_masks_seed0"],
                                 result["repnas_searched_over_seeds"]))
        lines.append(f"- the searched mask (over seeds) vs random masks (seed 0): "
                     f"{verdict(result['repnas_searched_over_seeds'], result['repnas_random_masks_seed0'])}")
    if "pruning_configurations_seed0" in result:
        lines.append(spread_line("pruning configurations vs seeds", result["pruning_configurations_seed0"],
                                 result["pruning_config0_over_seeds"]))
    return "\n".join(lines + [""])


def main(argv=None) -> int:
    parser = mode_arguments(__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5, help="seeds per choice and choices per seed")
    parser.add_argument("--configs", type=int, default=12, help="as search_sanity.py's (the same configurations)")
    args = parser.parse_args(argv)
    name, mode, workdir = open_mode(args)
    start = time.perf_counter()
    result = {"settings": {"mode": name, "dataset": mode["dataset"], "n": args.n, "repnas_overrides": mode["repnas"],
                           "prune_overrides": mode["prune"], "finetune_steps": mode["finetune_steps"]}}
    if "repnas" in args.parts:
        result.update(repnas_spread(mode, args.n, workdir))
    if "pruning" in args.parts:
        result.update(pruning_spread(mode, args.n, workdir, args.configs))
    result["wall_s"] = time.perf_counter() - start
    write_results(os.path.join(RESULTS, f"search_noise_floor_{name}.md"),
                  markdown(result, f"Choices vs seeds ({name}: {mode['dataset']})"), result)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
