"""``nas-jax prune``: ``graph`` (draw a model's layer graph), ``train`` (jointly train a
Graph PruningNet, then report accuracy at uniform widths), ``export`` (a width
configuration as a real smaller network) and ``search`` (a width configuration of a trained
PruningNet under a FLOPs, parameter or latency budget:

    nas-jax prune search --workdir W --method rl --budget flops=0.5 \\
        [--config experiments/configs/prune_search_digits.py] [--config.search.seed=1]

``--budget latency=0.5`` first times every layer on the current backend (cached in
``W/search/latency_table.json``); the search writes ``W/search/<method>/best.json`` (a
widths file for ``prune export``), ``W/search/<method>/state.json`` (the resumable
checkpoint) and ``W/search/pareto.png``).

The run's configuration is an ``ml_collections`` file (``experiments/configs/prune_*.py``)
holding the training keys of ``nas_jax.train.config.default_config`` plus ``pruning``
(see ``experiments/configs/prune_digits.py``), overridden by ``--config.key=value``
arguments (``--config.pruning.grid_step=0.1``) as for ``nas-jax train``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from nas_jax.common import write_json_atomic
from nas_jax.rep.kinds import BLOCK_KINDS
from nas_jax.pruning.search.searchers import METHODS

HELP = "Graph Pruning: draw a layer graph, train a PruningNet, export a pruned network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="prune_command", required=True)
    g = sub.add_parser("graph", help="draw the layer graph of a model (colour = coupled group)")
    g.add_argument("--model", required=True, help="a zoo model, or a user model as package.module:function "
                                                  "or path/to/file.py:function")
    g.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments of a user model's function")
    g.add_argument("--keep-full", nargs="*", default=(), help="layer paths kept at full width")
    g.add_argument("--block", default="plain", choices=BLOCK_KINDS)
    g.add_argument("--width", type=float, default=1.0)
    g.add_argument("--num-classes", type=int, default=1000)
    g.add_argument("--image-size", type=int, default=224)
    g.add_argument("--out", required=True, help="picture file, e.g. graph.png")
    g.add_argument("--widths-template", help="also write a widths file (every group at 1.0) here")
    g.set_defaults(_prune=run_graph)
    t = sub.add_parser("train", help="jointly train a Graph PruningNet; writes WORKDIR/report.json")
    t.add_argument("--config", required=True)
    t.add_argument("--workdir", required=True)
    t.set_defaults(takes_config_overrides=True)
    t.set_defaults(_prune=run_train)
    e = sub.add_parser("export", help="a width configuration of a trained PruningNet as a plain network")
    e.add_argument("--workdir", required=True)
    e.add_argument("--widths", required=True, help="widths JSON (see `prune graph --widths-template`)")
    e.add_argument("--out", required=True)
    e.set_defaults(_prune=run_export)
    add_search_parser(sub)


def run(args) -> int:
    return args._prune(args)


def run_graph(args) -> int:
    from nas_jax.pruning.draw import draw_graph
    from nas_jax.pruning.widths import save_widths, uniform_ratios
    from nas_jax.models import CustomSpec, is_custom
    from nas_jax.models.network import ZooSpec
    from nas_jax.pruning.graph import build_layer_graph

    if is_custom(args.model):
        spec = CustomSpec(args.model, args.num_classes, args.image_size,
                          tuple(sorted(json.loads(args.model_kwargs).items())))
    else:
        spec = ZooSpec(args.model, args.num_classes, args.width, args.image_size)
    graph = build_layer_graph(spec.model(args.block), (1, args.image_size, args.image_size, 3), spec.name,
                              args.keep_full)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    draw_graph(graph, args.out)
    for group in graph.groups:
        layers = ", ".join(graph.layers[i].path for i in group.layers)
        print(f"{'fixed' if group.fixed else 'group'} {group.name} ({group.channels} channels): {layers}")
    if args.widths_template:
        save_widths(args.widths_template, graph, uniform_ratios(graph, 1.0))
    print(f"{len(graph.layers)} layers, {len(graph.edges)} edges, {len(graph.prunable_groups)} prunable groups "
          f"-> {args.out}")
    return 0


def run_train(args) -> int:
    from nas_jax.pruning.workdir import accuracy_by_width, load_run_config, pruning_task
    from nas_jax.train.loop import train
    from nas_jax.train.run import Run

    config = load_run_config(args.config, args.config_overrides)
    run = Run(config, args.workdir, job="prune train")
    task = pruning_task(config, run.train_data.num_classes)
    start = time.time()
    state = train(run, task)
    seconds = time.time() - start
    report = {"model": task.spec.to_json(), "grid": list(task.grid.ratios), "train_seconds": seconds,
              "steps": int(state.step), **accuracy_by_width(config, task, state.params, run.train_data, run.eval_data)}
    write_json_atomic(os.path.join(args.workdir, "report.json"), report, indent=1)
    print(json.dumps(report["accuracy_by_width"]))
    return 0


def run_export(args) -> int:
    from nas_jax.pruning.workdir import export_from_workdir

    report = export_from_workdir(args.workdir, args.widths, args.out)
    print(json.dumps(report))
    return 0


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
