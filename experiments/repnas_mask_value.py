"""How much is a RepNAS mask worth, and does anything the search sees predict it?

``repnas_alpha_study.py`` found the searched mask no better than a random one. That can
mean two things: the search cannot find the good masks, or there are none to find (masks
differ by no more than training seeds do). This script separates the two. Every mask is
trained from scratch (``repnas.fixed_start=scratch``, so its worth does not depend on a
supernet) under the same seeds ``0 .. S-1``:

* ``M`` random masks under the main job's budget (``repnas.random_mask_seed`` 1 .. M);
* the searched masks of seeds ``0 .. S-1`` (each search run of the main job's config).

Figures:

* one-way ANOVA of test accuracy over masks (S seeds each): the F test of "masks differ",
  and the masks' variance component ``(MS_between - MS_within) / S``, the spread of mask
  worth with the seed noise taken out;
* what a perfect search could gain: the best mask's mean minus the random masks' mean
  (biased upward by picking the best of noisy means; the variance component is not);
* Kendall's tau between each mask's mean accuracy and what the searches could rank it by,
  each predictor averaged over the S searches: the sum of the alphas of its kept branches
  (what RepNAS's top-k maximises), and the supernet's loss and accuracy on the validation
  split (its first 2,000 images) with that mask at the fix step (one-shot evaluation, as SPOS ranks paths; the
  BatchNorms use the batch's statistics, so every mask is scored with its own), plus the
  count of layers left without a full 3x3 branch (conv3x3 or conv1x1_3x3), a structural
  guess.

    python experiments/repnas_mask_value.py                                  # digits, about 28 min on 2 cores
    python experiments/repnas_mask_value.py --mode full --masks 8 --seeds 3  # MNIST, about 40 min

Writes ``experiments/results/repnas_mask_value_{digits,mnist}.md`` and ``.json``; reruns
reuse finished runs under ``--workdir``.
"""
from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_io import write_results  # noqa: E402
from search_sanity import MODES, RESULTS, log, repnas_config, repnas_job, scratch_config  # noqa: E402

from nas_jax.rep.blocks import PRIMITIVES  # noqa: E402
from nas_jax.repnas.genotype import GENOTYPE_FILE, read_genotype_mask  # noqa: E402
from nas_jax.repnas.run import SEARCH_CHECKPOINT_DIR, build_task  # noqa: E402
from nas_jax.train.config import apply_overrides  # noqa: E402
from nas_jax.train.run import Run  # noqa: E402

FULL_3X3 = [PRIMITIVES.index("conv3x3"), PRIMITIVES.index("conv1x1_3x3")]


def scratch_job(config, mask: str, seed: int, workdir: str, extra=()) -> float:
    """Test accuracy of ``mask`` (``'random'`` or a genotype path) trained from scratch."""
    config = apply_overrides(scratch_config(config, mask), [f"--config.seed={seed}", *extra])
    return repnas_job(config, workdir)["fused_test_accuracy"]


def supernet_scores(config, search_dir: str, masks: np.ndarray, examples: int = 2000) -> dict:
    """Loss and accuracy ``[K]`` of the search run's supernet at its fix step on the first
    ``examples`` images of the validation split, once per mask of ``masks [K, L, 6]``
    (``RepNASTask.mask_scores``: BatchNorms on the batch's statistics); and the alphas
    ``[L, 6]``."""
    run = Run(config, search_dir, job="repnas")
    task = build_task(config, run.train_data)
    state = run.restored_state(task, SEARCH_CHECKPOINT_DIR)
    data = run.pipeline(config.eval_split)
    batch = next(data.eval_batches(min(examples, data.num_examples)))
    keep = batch["mask"] > 0
    loss, accuracy = jax.jit(task.mask_scores)(state.params, state.batch_stats, masks,
                                               {"image": batch["image"][keep], "label": batch["label"][keep]})
    return {"loss": np.asarray(loss), "accuracy": np.asarray(accuracy),
            "alphas": np.asarray(jax.device_get(state.extra["alphas"]))}


def mask_of(workdir: str, paths) -> np.ndarray:
    return read_genotype_mask(os.path.join(workdir, GENOTYPE_FILE), paths)


def anova(acc: np.ndarray) -> dict:
    """``acc [K masks, S seeds]``: F test over masks and the masks' variance component."""
    k, s = acc.shape
    f, p = stats.f_oneway(*acc)
    ms_between = s * np.var(acc.mean(axis=1), ddof=1)
    ms_within = np.mean(np.var(acc, axis=1, ddof=1))
    return {"F": float(f), "p": float(p), "ms_between": float(ms_between), "ms_within": float(ms_within),
            "mask_std": float(np.sqrt(max(ms_between - ms_within, 0.0) / s)), "seed_std": float(np.sqrt(ms_within))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("quick", "full"), default="quick")
    parser.add_argument("--workdir", default=None, help="default /tmp/repnas_mask_value_{mode}")
    parser.add_argument("--masks", type=int, default=10, help="random masks M")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds S (and searches)")
    args = parser.parse_args(argv)
    mode = MODES[args.mode]
    workdir = args.workdir or f"/tmp/repnas_mask_value_{args.mode}"
    config = repnas_config(mode, 0)
    names, accuracy = [], []
    search_dirs = [os.path.join(workdir, f"search_{s}") for s in range(args.seeds)]
    for s, directory in enumerate(search_dirs):
        log(f"search, seed {s}")
        repnas_job(repnas_config(mode, s), directory)
    for m in range(1, args.masks + 1):
        names.append(f"random {m}")
        row = []
        for s in range(args.seeds):
            log(f"random mask {m}, seed {s}")
            row.append(scratch_job(config, "random", s, os.path.join(workdir, f"random{m}_seed{s}"),
                                   [f"--config.repnas.random_mask_seed={m}"]))
        accuracy.append(row)
    for t, directory in enumerate(search_dirs):
        names.append(f"searched {t}")
        row = []
        for s in range(args.seeds):
            log(f"searched mask {t}, seed {s}")
            row.append(scratch_job(config, os.path.join(directory, GENOTYPE_FILE), s,
                                   os.path.join(workdir, f"searched{t}_seed{s}")))
        accuracy.append(row)
    accuracy = np.array(accuracy)

    paths = build_task(config, Run(config, search_dirs[0], job="repnas").train_data).paths
    masks = np.stack([mask_of(os.path.join(workdir, f"random{m}_seed0"), paths) for m in range(1, args.masks + 1)]
                     + [mask_of(d, paths) for d in search_dirs]).astype(np.float32)
    scores = [supernet_scores(repnas_config(mode, s), d, masks) for s, d in enumerate(search_dirs)]
    predictors = {
        "alpha sum (kept branches)": np.mean([(masks * sc["alphas"]).sum(axis=(1, 2)) for sc in scores], axis=0),
        "supernet validation accuracy": np.mean([sc["accuracy"] for sc in scores], axis=0),
        "supernet validation loss (negated)": -np.mean([sc["loss"] for sc in scores], axis=0),
        "layers without a full 3x3 (negated)": -(masks[:, :, FULL_3X3].sum(axis=2) == 0).sum(axis=1)
        .astype(np.float64),
    }
    mean = accuracy.mean(axis=1)
    tau = lambda x, y: dict(zip(("tau", "p"), map(float, stats.kendalltau(x, y))))  # noqa: E731
    taus = {name: {"all": tau(value, mean), "random": tau(value[:args.masks], mean[:args.masks])}
            for name, value in predictors.items()}
    random_rows = accuracy[:args.masks]
    result = {"settings": {"mode": args.mode, "dataset": mode["dataset"], "random_masks": args.masks,
                           "seeds": args.seeds, "overrides": mode["repnas"]},
              "masks": names, "accuracy": accuracy.tolist(), "anova_all": anova(accuracy),
              "anova_random": anova(random_rows),
              "best_minus_random_mean": float(mean.max() - random_rows.mean()),
              "searched_minus_random": float(accuracy[args.masks:].mean() - random_rows.mean()),
              "searched_vs_random_welch_p": float(stats.ttest_ind(mean[args.masks:], mean[:args.masks],
                                                                  equal_var=False).pvalue),
              "predictors": {name: value.tolist() for name, value in predictors.items()}, "kendall_tau": taus}
    write_results(os.path.join(RESULTS, f"repnas_mask_value_{mode['dataset']}.md"), markdown(result, args),
                  result)
    return 0


def markdown(result: dict, args) -> str:
    s = result["settings"]
    acc = np.array(result["accuracy"])
    lines = [f"# What a RepNAS mask is worth on {s['dataset']}", "",
             f"ResNet-18 x0.25, `experiments/configs/repnas_digits.py` ({s['mode']} mode of "
             f"`experiments/search_sanity.py`); every mask trained from scratch with seeds 0 to {s['seeds'] - 1}; "
             "test accuracy of the fused network.", "",
             "| mask | " + " | ".join(f"seed {i}" for i in range(s["seeds"])) + " | mean |",
             "|---|" + "---|" * (s["seeds"] + 1)]
    for name, row in zip(result["masks"], acc):
        lines.append(f"| {name} | " + " | ".join(f"{a:.4f}" for a in row) + f" | {row.mean():.4f} |")
    lines += ["", "| masks | F (masks vs seeds) | p | masks' std (seed noise removed) | seed std |", "|---|---|---|---|---|"]
    for key, label in (("anova_random", "random only"), ("anova_all", "random and searched")):
        a = result[key]
        lines.append(f"| {label} | {a['F']:.2f} | {a['p']:.3f} | {a['mask_std']:.4f} | {a['seed_std']:.4f} |")
    lines += ["", f"- searched masks' mean minus random masks' mean: {result['searched_minus_random']:+.4f} "
              f"(Welch's t over the masks' means, p = {result['searched_vs_random_welch_p']:.3f})",
              f"- best mask's mean minus random masks' mean (a perfect search, biased upward): "
              f"{result['best_minus_random_mean']:+.4f}", "",
              "Kendall's tau (p) between a predictor (higher = predicted better) and the masks' mean accuracy, over "
              "all masks and over the random ones only (a search run's supernet favours its own searched mask, the "
              "one it trained last):", "",
              "| predictor | all masks | random masks |", "|---|---|---|"]
    for name, t in result["kendall_tau"].items():
        lines.append(f"| {name} | {t['all']['tau']:+.3f} ({t['all']['p']:.3f}) "
                     f"| {t['random']['tau']:+.3f} ({t['random']['p']:.3f}) |")
    lines += ["", f"Command: `python experiments/repnas_mask_value.py --mode {s['mode']} --masks {s['random_masks']} "
              f"--seeds {s['seeds']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
