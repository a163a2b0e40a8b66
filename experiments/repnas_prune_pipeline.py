"""RepNAS search and fusion, Graph Pruning of the fused network, fine-tuning, fusion again.

    python experiments/repnas_prune_pipeline.py --config experiments/configs/pipeline_digits.py --workdir W

Stages, each in its own directory under ``W`` and each skipped when its result is there
(a killed pipeline started again goes on; every stage's command also resumes from its
own checkpoints):

1. ``W/repnas``: ``nas-jax repnas`` (search, fixed training, fusion to one 3x3 conv per layer);
2. the layer graph of the fused deploy network, checked to be the plain model's graph (same
   layers, shapes and coupled groups): fusion removed the branches, so pruning the fused
   network is pruning that plain architecture. The Graph PruningNet generates its weights
   in the conv-BN form, which it needs to train from scratch (``W/fused_graph.png``);
3. ``W/prune``: ``nas-jax prune train`` on that architecture;
4. ``W/prune/search/<method>``: the width search under the budget (held-out validation split);
5. ``W/export``: the best configuration as a real smaller network (``nas-jax prune export``);
6. ``W/finetune``: ``nas-jax train --config.init_from=W/export``, then ``nas-jax fuse``
   (the deploy form, checked against the trained network).

Writes ``W/pipeline.json`` (each stage's figures and wall-clock) and prints a summary.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from prune_digits_table import finetune_test_accuracy  # noqa: E402

from nas_jax.cli import main as nas_jax  # noqa: E402
from nas_jax.models import create_model  # noqa: E402
from nas_jax.models.network import ZooSpec  # noqa: E402
from nas_jax.pruning.draw import draw_graph  # noqa: E402
from nas_jax.pruning.graph import build_layer_graph, zoo_graph  # noqa: E402
from nas_jax.pruning.workdir import export_from_workdir, load_run_config  # noqa: E402
from nas_jax.pruning.search.context import SearchContext  # noqa: E402
from nas_jax.train.config import apply_overrides, load_config  # noqa: E402
from nas_jax.train.run import pipeline_from_config  # noqa: E402

SAME_KEYS = ("model", "width", "dataset", "image_size")


def repo_path(path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(REPO, path)


def check_stages(config):
    """The RepNAS and pruning configs, refused unless they name the same network and data."""
    repnas = apply_overrides(load_config(repo_path(config.repnas_config)), config.repnas_overrides)
    prune = load_run_config(repo_path(config.prune_config), config.prune_overrides)
    differ = {k: (repnas.get(k), prune.get(k)) for k in SAME_KEYS if repnas.get(k) != prune.get(k)}
    shapes = [tuple(pipeline_from_config(c, c.train_split).image_shape) for c in (repnas, prune)]
    if shapes[0] == shapes[1]:  # image_size 0 is the dataset's own size
        differ.pop("image_size", None)
    if differ:
        raise ValueError(f"the RepNAS and pruning configs must prune the searched network: they differ in {differ}")
    return repnas, prune


def timed(stage: str, record: dict, fn):
    start = time.perf_counter()
    result = fn()
    record[stage] = {**(result or {}), "wall_s": time.perf_counter() - start}
    print(f"[pipeline] {stage}: {json.dumps(record[stage])}", flush=True)
    return record[stage]


def fused_graph(workdir: str, prune_config) -> dict:
    """Stage 2: the fused network's layer graph equals the plain model's."""
    with open(os.path.join(workdir, "repnas", "deploy.json")) as f:
        deploy = json.load(f)
    spec = ZooSpec(prune_config.model, deploy["num_classes"], prune_config.width, prune_config.image_size or 32)
    shape = (1, spec.image_size, spec.image_size, 3)
    fused = build_layer_graph(create_model(deploy["model"], block="deploy", num_classes=deploy["num_classes"],
                                           width=deploy["width"]), shape, spec.name)
    plain = zoo_graph(spec)
    if (fused.layers, fused.edges, fused.groups) != (plain.layers, plain.edges, plain.groups):
        raise RuntimeError("the fused RepNAS network's layer graph differs from the plain model's")
    draw_graph(fused, os.path.join(workdir, "fused_graph.png"))
    return {"layers": len(fused.layers), "coupled_groups": len(fused.groups),
            "prunable_groups": len(fused.prunable_groups)}


def run(config, workdir: str) -> dict:
    _, prune = check_stages(config)
    os.makedirs(workdir, exist_ok=True)
    record: dict = {}

    def repnas():
        report_path = os.path.join(workdir, "repnas", "report.json")
        if not os.path.isfile(report_path):
            status = nas_jax(["repnas", "--config", repo_path(config.repnas_config), "--workdir",
                              os.path.join(workdir, "repnas"), f"--config.seed={config.seed}",
                              *config.repnas_overrides])
            if status:
                raise RuntimeError(f"nas-jax repnas failed ({status})")
        with open(report_path) as f:
            report = json.load(f)
        return {k: report[k] for k in ("fused_test_accuracy", "kept_branches", "total_branches", "deploy_params")}

    def prune_train():
        report_path = os.path.join(workdir, "prune", "report.json")
        if not os.path.isfile(report_path):
            status = nas_jax(["prune", "train", "--config", repo_path(config.prune_config), "--workdir",
                              os.path.join(workdir, "prune"), f"--config.seed={config.seed}", *config.prune_overrides])
            if status:
                raise RuntimeError(f"nas-jax prune train failed ({status})")
        with open(report_path) as f:
            return {"accuracy_by_width": json.load(f)["accuracy_by_width"]}

    def search():
        s = apply_overrides(load_config(repo_path(config.search_config)), [f"--config.search.seed={config.seed}"])
        best = SearchContext(os.path.join(workdir, "prune"), s.search).search(config.method, config.budget, s.search)
        return {k: best[k] for k in ("method", "budget", "flops_ratio", "params_ratio", "val_accuracy", "evaluations")}

    def export():
        best = os.path.join(workdir, "prune", "search", config.method, "best.json")
        report = export_from_workdir(os.path.join(workdir, "prune"), best, os.path.join(workdir, "export"))
        return {k: report[k] for k in ("flops", "params", "flops_ratio", "max_abs_diff_vs_masked")}

    def finetune():
        accuracy = finetune_test_accuracy(os.path.join(workdir, "export"), os.path.join(workdir, "finetune"),
                                          config.finetune_steps, config.seed)
        if nas_jax(["fuse", "--workdir", os.path.join(workdir, "finetune")]):
            raise RuntimeError("nas-jax fuse of the fine-tuned network failed")
        return {"test_accuracy": accuracy, "steps": config.finetune_steps}

    timed("1 repnas", record, repnas)
    timed("2 fused graph", record, lambda: fused_graph(workdir, prune))
    timed("3 prune train", record, prune_train)
    timed("4 search", record, search)
    timed("5 export", record, export)
    timed("6 finetune + fuse", record, finetune)
    with open(os.path.join(workdir, "pipeline.json"), "w") as f:
        json.dump({"config": config.to_dict(), "stages": record}, f, indent=1)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(REPO, "experiments", "configs", "pipeline_digits.py"))
    parser.add_argument("--workdir", required=True)
    args, overrides = parser.parse_known_args()
    config = apply_overrides(load_config(args.config), overrides)
    record = run(config, args.workdir)
    print(f"RepNAS fused test accuracy {record['1 repnas']['fused_test_accuracy']:.4f} -> pruned to "
          f"{record['5 export']['flops_ratio']:.3f} of the FLOPs ({record['5 export']['params']:,} params), "
          f"fine-tuned test accuracy {record['6 finetune + fuse']['test_accuracy']:.4f}; "
          f"files in {os.path.abspath(args.workdir)}")


if __name__ == "__main__":
    main()
