"""The digits table: plain vs DBB vs online DBB (OREPA) vs RepNAS (kept_ratio 0.34) vs online RepNAS, several seeds, the same
deploy network (ResNet-18 at width 0.25, one 3x3 conv per layer after fusion), the same
training length, optimiser and data; test accuracy (mean +- std) and wall-clock.

Plain, DBB and online DBB (``block='orepa'``) run ``nas-jax train`` with ``experiments/configs/train_digits.py`` set to
the RepNAS config's length and optimiser settings, then ``nas-jax eval --split test``;
RepNAS runs ``nas-jax repnas --config experiments/configs/repnas_digits.py`` (online RepNAS:
with ``--config.block=repnas_online``) and reads the fused network's test accuracy from its
report. Each run is a separate process
timed from start to end (compilation included; a persistent XLA cache under
``--workdir`` is shared by all runs, so the first seed of each method pays for most of
its compilation). Writes ``experiments/results/repnas_digits.md`` (and ``.json``);
``--methods`` runs some of them only.

    python experiments/repnas_digits_table.py --seeds 0 1 2 --workdir /tmp/repnas_table [--methods plain DBB OREPA]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


from results_io import mean_std, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "experiments", "configs")
RESULTS = os.path.join(REPO, "experiments", "results")
BLOCKS = {"plain": "plain", "DBB": "dbb", "OREPA": "orepa"}  # the baselines: method -> block
SUPERNETS = {"RepNAS": "repnas", "RepNAS-online": "repnas_online"}  # method -> supernet block
METHODS = (*BLOCKS, *SUPERNETS)


def _run(args, env) -> str:
    out = subprocess.run([sys.executable, "-m", "nas_jax.cli", *args], cwd=REPO, env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f"nas-jax {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def repnas_settings():
    """The RepNAS digits config's training settings, which the baselines take over."""
    sys.path.insert(0, CONFIGS)
    from repnas_digits import get_config

    c = get_config()
    keys = ("model", "width", "num_epochs", "batch_size", "learning_rate", "weight_decay", "warmup_steps",
            "grad_clip_norm", "label_smoothing")
    return {k: c[k] for k in keys}


def baseline(block: str, seed: int, workdir: str, env) -> dict:
    settings = repnas_settings()
    overrides = [f"--config.{k}={v}" for k, v in settings.items()] + [
        f"--config.block={block}", f"--config.seed={seed}", "--config.eval_every=0"]
    start = time.perf_counter()
    _run(["train", "--config", os.path.join(CONFIGS, "train_digits.py"), "--workdir", workdir, *overrides], env)
    wall = time.perf_counter() - start
    result = json.loads(_run(["eval", "--workdir", workdir, "--split", "test"], env).strip().splitlines()[-1])
    return {"test_accuracy": result["accuracy"], "wall_s": wall}


def repnas(block: str, seed: int, workdir: str, env, kept_ratio: float) -> dict:
    start = time.perf_counter()
    _run(["repnas", "--config", os.path.join(CONFIGS, "repnas_digits.py"), "--workdir", workdir,
          f"--config.seed={seed}", f"--config.repnas.kept_ratio={kept_ratio}", f"--config.block={block}"], env)
    wall = time.perf_counter() - start
    with open(os.path.join(workdir, "report.json")) as f:
        report = json.load(f)
    return {"test_accuracy": report["fused_test_accuracy"], "wall_s": wall, "kept_branches": report["kept_branches"],
            "total_branches": report["total_branches"], "deploy_params": report["deploy_params"],
            "fused_vs_supernet_max_abs_logit_diff": report["fused_vs_supernet_max_abs_logit_diff"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default="/tmp/repnas_digits_table")
    parser.add_argument("--kept-ratio", type=float, default=0.34)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--out", default=os.path.join(RESULTS, "repnas_digits.md"))
    args = parser.parse_args()
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": os.path.join(args.workdir, "xla_cache")}
    runs = {(f"{m} ({args.kept_ratio})" if m in SUPERNETS else m): [] for m in args.methods}
    for seed in args.seeds:
        for name in runs:
            method = name.split()[0]
            workdir = os.path.join(args.workdir, f"{method.lower()}_seed{seed}")
            if method in BLOCKS:
                result = baseline(BLOCKS[method], seed, workdir, env)
            else:
                result = repnas(SUPERNETS[method], seed, workdir, env, args.kept_ratio)
            runs[name].append(result)
            print(f"{name} seed {seed}: test accuracy {result['test_accuracy']:.4f}, wall {result['wall_s']:.0f} s",
                  flush=True)
    settings = repnas_settings()
    lines = [f"# Digits: {' vs '.join(runs)} ({settings['model']} width {settings['width']}, "
             f"{settings['num_epochs']:g} epochs, seeds {args.seeds})", "",
             "All deploy to the same network (one 3x3 conv with bias per layer). Test split: 360 images.", "",
             "| method | test accuracy % (mean ± sample std) | training wall-clock s (mean ± sample std) | per seed |",
             "| --- | --- | --- | --- |"]
    for name, results in runs.items():
        acc = [r["test_accuracy"] for r in results]
        wall = [r["wall_s"] for r in results]
        per_seed = ", ".join(f"{100 * a:.2f}" for a in acc)
        lines.append(f"| {name} | {mean_std(acc, 100, 2)} | {mean_std(wall, 1, 0)} | {per_seed} |")
    for method in SUPERNETS:
        repnas_runs = runs.get(f"{method} ({args.kept_ratio})")
        if repnas_runs:
            rep = repnas_runs[0]
            lines += ["", f"{method} keeps {rep['kept_branches']} of {rep['total_branches']} branches; deploy params "
                      f"{rep['deploy_params']:,}; fused vs trained max |logit diff| "
                      f"{max(r['fused_vs_supernet_max_abs_logit_diff'] for r in repnas_runs):.1e}."]
    lines += ["", "Wall-clock is the whole command (data, compilation, training, evaluation; RepNAS also fusion and "
              "report) on a shared 2-core CPU; a persistent XLA cache makes later seeds compile less."]
    write_results(args.out, "\n".join(lines) + "\n", {"seeds": args.seeds, "settings": settings, "runs": runs})


if __name__ == "__main__":
    main()
