"""One-shot selection against RepNAS's alpha search and against random masks.

``repnas_mask_value.py`` found that the alphas do not rank masks, while a supernet's
one-shot loss with a mask does (MNIST, tau 0.64 over random masks). But a supernet after
the alpha search favours its own top-k, the mask it trained on last. So here the search
phase is replaced by random masks only (``repnas.search_epochs=0``, the random phase
lengthened to the same fix step: a supernet trained uniformly over masks, as SPOS trains
one), and the fixed mask is ``repnas.fixed_mask=one_shot``: of 64 random masks under the
budget, the one with the lowest supernet loss on 2,000 validation images. Per seed:

* one-shot, inherited: the selected mask trained on from the uniform supernet;
* random, inherited: a random mask (``fixed_mask=random``) from the same uniform supernet;
* one-shot and random from scratch (``fixed_start=scratch``);
* the paper's search (alphas), inherited and from scratch.

The random and searched runs are ``repnas_alpha_study.py``'s (``global_*`` under the same
``--workdir``), reused when there. Test accuracy of the fused networks; paired over seeds.

    python experiments/repnas_one_shot.py --mode full --seeds 19  # MNIST, about 12 min a seed on 2 cores (8 more for the alpha search)
    python experiments/repnas_one_shot.py --mode full --seeds 29 --resume --without-alpha-search  # 10 seeds more

Writes ``experiments/results/repnas_one_shot_{digits,mnist}.md`` and ``.json``.
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
from search_sanity import MODES, RESULTS, log, random_mask_job, repnas_config, repnas_job, scratch_config  # noqa: E402

from nas_jax.repnas.genotype import GENOTYPE_FILE  # noqa: E402
from nas_jax.train.config import apply_overrides  # noqa: E402


def uniform_supernet_config(config):
    """``config`` with the search phase turned into random masks up to the same fix step."""
    r = config.repnas
    return apply_overrides(config, [f"--config.repnas.random_epochs={r.random_epochs + r.search_epochs}",
                                    "--config.repnas.search_epochs=0.0", "--config.repnas.fixed_mask=one_shot"])


def one_seed(mode: str, seed: int, workdir: str, alpha_search: bool = True) -> dict:
    """The seed's fused test accuracies by row name (without ``alpha_search``, the
    two alpha-search rows are left out) and the one-shot candidates' supernet losses."""
    config = repnas_config(MODES[mode], seed)
    path = lambda name: os.path.join(workdir, f"{name}_{seed}")  # noqa: E731
    scratch = lambda mask: scratch_config(config, mask)  # noqa: E731
    log(f"seed {seed}: one-shot selection from a uniform supernet")
    reports = {"one_shot": repnas_job(uniform_supernet_config(config), path("one_shot"))}
    log(f"seed {seed}: random mask from the uniform supernet")
    reports["one_shot_random"] = random_mask_job(uniform_supernet_config(config), path("one_shot"),
                                                 path("one_shot_random"))
    log(f"seed {seed}: the one-shot mask from scratch")
    reports["one_shot_scratch"] = repnas_job(scratch(os.path.join(path("one_shot"), GENOTYPE_FILE)),
                                             path("one_shot_scratch"))
    log(f"seed {seed}: the random mask from scratch")
    reports["random_scratch"] = repnas_job(scratch("random"), path("global_random_scratch"))
    if alpha_search:
        log(f"seed {seed}: the alpha search")
        reports["searched"] = repnas_job(config, path("global_searched"))
        log(f"seed {seed}: the searched mask from scratch")
        reports["searched_scratch"] = repnas_job(scratch(os.path.join(path("global_searched"), GENOTYPE_FILE)),
                                                 path("global_searched_scratch"))
    losses = np.array(reports["one_shot"]["one_shot"]["losses"])
    return {"seed": seed, "one_shot_losses": {"chosen": float(losses.min()), "median": float(np.median(losses)),
                                              "max": float(losses.max())},
            **{name: report["fused_test_accuracy"] for name, report in reports.items()}}


def paired(rows, a: str, b: str) -> str:
    """Mean ± std of ``a - b`` over the seeds that ran both, the paired t-test's and the
    Wilcoxon signed-rank test's p, and the count."""
    rows = [r for r in rows if a in r and b in r]
    x, y = np.array([r[a] for r in rows]), np.array([r[b] for r in rows])
    t, w = (stats.ttest_rel(x, y).pvalue, stats.wilcoxon(x, y).pvalue) if len(rows) > 1 and np.any(x != y) \
        else (float("nan"), float("nan"))
    return f"{mean_std(x - y, digits=4)} (p = {t:.2f} t, {w:.2f} Wilcoxon; {len(rows)} seeds)"


def markdown(rows, mode: str, commands: str) -> str:
    dataset = MODES[mode]["dataset"]
    lines = [f"# RepNAS on {dataset}: one-shot selection vs the alpha search vs random masks", "",
             f"ResNet-18 x0.25, `experiments/configs/repnas_digits.py` ({mode} mode of "
             f"`experiments/search_sanity.py`), seeds 0 to {len(rows) - 1}; mean ± sample std of the fused network's "
             "test accuracy; differences paired over seeds (paired t). One-shot: the supernet trained on random masks "
             "only up to the fix step, then the best of 64 random masks by its loss on 2,000 validation images "
             "(`repnas.search_epochs=0`, `repnas.fixed_mask=one_shot`).", "",
             "| fixed phase | one-shot | random | alpha search (paper) |", "|---|---|---|---|"]

    def col(key):
        values = [r[key] for r in rows if key in r]
        return f"{mean_std(values, digits=4)}" + ("" if len(values) == len(rows) else f" ({len(values)} seeds)")

    lines.append(f"| inherited | {col('one_shot')} | {col('one_shot_random')} (from the same uniform supernet) "
                 f"| {col('searched')} |")
    lines.append(f"| from scratch | {col('one_shot_scratch')} | {col('random_scratch')} | {col('searched_scratch')} |")
    lines += ["", "| comparison | difference (paired) |", "|---|---|",
              f"| one-shot − random, inherited | {paired(rows, 'one_shot', 'one_shot_random')} |",
              f"| one-shot − random, from scratch | {paired(rows, 'one_shot_scratch', 'random_scratch')} |",
              f"| one-shot − alpha search, inherited | {paired(rows, 'one_shot', 'searched')} |",
              f"| one-shot − alpha search, from scratch | {paired(rows, 'one_shot_scratch', 'searched_scratch')} |",
              f"| alpha search − random, from scratch | {paired(rows, 'searched_scratch', 'random_scratch')} |",
              "", "Supernet loss of the 64 candidates (chosen / median / worst), per seed: "
              + "; ".join(f"{r['one_shot_losses']['chosen']:.3f} / {r['one_shot_losses']['median']:.3f} / "
                          f"{r['one_shot_losses']['max']:.3f}" for r in rows),
              "", f"Commands: `{commands}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("quick", "full"), default="full")
    parser.add_argument("--workdir", default=None, help="default /tmp/repnas_alpha_study_{mode} (shared with "
                                                        "repnas_alpha_study.py, whose runs are reused)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1")
    parser.add_argument("--without-alpha-search", action="store_true",
                        help="leave out the alpha-search rows for the seeds run now (they take twice the rest)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the seeds already in the results JSON and run only the missing ones")
    args = parser.parse_args(argv)
    workdir = args.workdir or f"/tmp/repnas_alpha_study_{args.mode}"
    dataset = MODES[args.mode]["dataset"]
    json_path = os.path.join(RESULTS, f"repnas_one_shot_{dataset}.json")
    done, commands = {}, []
    if args.resume and os.path.exists(json_path):
        with open(json_path) as f:
            previous = json.load(f)
        done = {row["seed"]: row for row in previous["rows"]}
        commands = previous.get("commands") or [
            f"python experiments/repnas_one_shot.py --mode {args.mode} --seeds {len(done)}"]
        log(f"resuming: seeds {sorted(done)} kept from {json_path}")
    rows = [done[seed] for seed in range(args.seeds) if seed in done]

    def write(commands):
        write_results(os.path.join(RESULTS, f"repnas_one_shot_{dataset}.md"),
                      markdown(rows, args.mode, "`, then `".join(commands)),
                      {"dataset": dataset, "seeds": len(rows), "commands": commands, "rows": rows})

    for seed in range(args.seeds):  # results written after every seed: a stopped run keeps what it has
        if seed in done:
            continue
        rows.append(one_seed(args.mode, seed, workdir, alpha_search=not args.without_alpha_search))
        rows.sort(key=lambda row: row["seed"])
        write(commands + [f"python experiments/repnas_one_shot.py --mode {args.mode} --seeds {seed + 1}"
                          + " --without-alpha-search" * args.without_alpha_search + " --resume" * bool(done)])
    if rows and len(rows) == len(done):  # nothing new to run: the tables again, from the results
        write(commands)
    return 0


if __name__ == "__main__":
    sys.exit(main())
