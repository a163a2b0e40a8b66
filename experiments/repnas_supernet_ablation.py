"""Why the RepNAS supernet did not learn, measured: the search phase of the main job
(``experiments/configs/repnas_digits.py``, 32 random + 64 search steps) under settings
that each change one thing, and the supernet's train accuracy at the fix step (the
logged mean of its last 16 steps), against the plain network's at the same step.

    python experiments/repnas_supernet_ablation.py --workdir /tmp/ablation [--seed 0]

Writes ``experiments/results/repnas_supernet_ablation.md`` (and ``.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_io import write_results  # noqa: E402
from search_sanity import CONFIGS, baseline_job, supernet_only, train_accuracy_at  # noqa: E402

from nas_jax.train.config import apply_overrides, load_config  # noqa: E402

PAPER = ["--config.repnas.noise_lifetime=1", "--config.repnas.noise_final=1.0", "--config.repnas.branch_scale_init=1.0"]
SETTINGS = {
    "paper: a new mask every step, branches at full scale": PAPER,
    "paper, fixed mask (one mask for the whole search)": PAPER[1:] + ["--config.repnas.noise_lifetime=100000"],
    "paper, kept_ratio 1.0 (every branch, no sampling)": PAPER + ["--config.repnas.kept_ratio=1.0"],
    "paper, kept_ratio 0.9": PAPER + ["--config.repnas.kept_ratio=0.9"],
    "paper, per_layer_cap 2 (exactly 2 branches a layer)": PAPER + ["--config.repnas.per_layer_cap=2"],
    "paper, learning rate 0.02": PAPER + ["--config.learning_rate=0.02"],
    "paper + branch_scale_init 0": PAPER[:2] + ["--config.repnas.branch_scale_init=0.0"],
    "paper + noise_lifetime 48": PAPER[1:] + ["--config.repnas.noise_lifetime=48"],
    "paper + noise_final 0.05": [PAPER[0], PAPER[2], "--config.repnas.noise_final=0.05"],
    "nas_jax defaults (noise_lifetime 48, noise_final 0.05, branch_scale_init 0 exact / 1 online)": [],
    "nas_jax defaults, online block": ["--config.block=repnas_online"],
    "nas_jax defaults, online block, branch_scale_init 0": ["--config.block=repnas_online",
                                                             "--config.repnas.branch_scale_init=0.0"],
    "paper, online block": PAPER + ["--config.block=repnas_online"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base = load_config(os.path.join(CONFIGS, "repnas_digits.py"))
    rows = {}
    for i, (name, overrides) in enumerate(SETTINGS.items()):
        config = apply_overrides(base, [f"--config.seed={args.seed}", *overrides])
        rows[name] = {"overrides": overrides,
                      "train_accuracy": supernet_only(config, os.path.join(args.workdir, f"setting{i:02d}"))}
        print(json.dumps({name: rows[name]}), flush=True)
    plain_dir = os.path.join(args.workdir, "plain")
    config = apply_overrides(base, [f"--config.seed={args.seed}"])
    baseline_job(config, "plain", plain_dir)
    plain = train_accuracy_at(plain_dir, 96)
    lines = [f"Supernet train accuracy at the fix step (96) of the digits main job, seed {args.seed}; the plain "
             f"network: {plain:.4f} (0.8x: {0.8 * plain:.4f}). Chance: 0.1.", "",
             "| setting | overrides | train accuracy at step 96 | / plain |", "|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | `{' '.join(row['overrides']) or '(none)'}` | {row['train_accuracy']:.4f} | "
                     f"{row['train_accuracy'] / plain:.2f} |")
    write_results(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "repnas_supernet_ablation.md"),
                  "\n".join(lines) + "\n", {"seed": args.seed, "plain_train_accuracy": plain, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
