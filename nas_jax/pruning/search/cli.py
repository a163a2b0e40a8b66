"""``nas-jax prune search``: search a width configuration of a trained Graph PruningNet.

    nas-jax prune search --workdir W --method rl --budget flops=0.5 \\
        [--config experiments/configs/prune_search_digits.py] [--config.search.seed=1]

``--budget latency=0.5`` first times every layer on the current backend (cached in
``W/search/latency_table.json``). Writes ``W/search/<method>/best.json`` (a widths file
for ``nas-jax prune export``), ``W/search/<method>/state.json`` (the resumable
checkpoint) and ``W/search/pareto.png``.
"""
from __future__ import annotations

import argparse
import json
import os

from nas_jax.pruning.search.searchers import METHODS


def add_search_parser(sub) -> None:
    """Adds ``search`` to the ``prune`` subcommands ``sub``."""
    s = sub.add_parser("search", help="search a width configuration under a FLOPs, parameter or latency budget")
    s.add_argument("--workdir", required=True, help="a `nas-jax prune train` work directory")
    s.add_argument("--method", required=True, choices=METHODS)
    s.add_argument("--budget", required=True,
                   help="flops=FRACTION, params=FRACTION or latency=FRACTION of the full model "
                        "(latency: per-layer times measured on this backend first)")
    s.add_argument("--config", help="a config file with a `search` section (default: MetaPruning's settings)")
    s.set_defaults(takes_config_overrides=True, _prune=run_search_command)


def run_search_command(args: argparse.Namespace) -> int:
    from nas_jax.pruning.search.config import default_config
    from nas_jax.pruning.search.pareto import plot_pareto
    from nas_jax.pruning.search.context import SearchContext
    from nas_jax.train.config import apply_overrides, load_config

    config = apply_overrides(load_config(args.config) if args.config else default_config(), args.config_overrides)

    def log(iteration, history):
        print(f"iteration {iteration}: {len(history)} evaluations, best score {max(history.columns['score']):.4f}",
              flush=True)

    best = SearchContext(args.workdir, config.search).search(args.method, args.budget, config.search, log=log)
    plot_pareto(os.path.join(args.workdir, "search"), os.path.join(args.workdir, "search", "pareto.png"))
    print(json.dumps({k: best[k] for k in ("method", "budget", "flops_ratio", "params_ratio", "latency_ratio",
                                           "val_accuracy", "evaluations", "wall_s") if k in best}))
    return 0
