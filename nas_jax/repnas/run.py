"""The RepNAS job: search, fix, train and fuse in one run of the shared training loop,
then leave in the work directory:

* ``genotype.json`` (see ``nas_jax.repnas.genotype``);
* ``alphas.png`` (the learnt alphas, kept branches marked) and ``mask_frequency.png``
  (the fraction of phase-2 steps in which each branch was kept), ``mask_trace.png`` (the
  noise-free mask's snapshots over phase 2 and how many branches changed between them),
  ``alpha_gradient_t.png`` (each alpha's gradient t statistic over the search,
  ``nas_jax.repnas.task.alpha_gradient_t``);
* ``deploy/`` (orbax, ``{'params'}`` of ``block='deploy'``) and ``deploy.json``;
* ``report.json``: test accuracy of the trained network (the fixed sub-network before
  fusion) and of the fused one, their largest logit difference, parameter counts,
  branch counts and wall-clock;
* everything the loop writes: ``search_checkpoints/`` (the search, to the fixing point),
  ``checkpoints/`` (the fixed sub-network, from there), ``metrics.jsonl`` (both, one
  history), ``training_curve.png``.

A killed run started again with the same command resumes in the right phase.
"""
from __future__ import annotations

import os
import time
from typing import Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nas_jax.common import write_json_atomic
from nas_jax.data import Pipeline
from nas_jax.models import create_model
from nas_jax.rep.fuse import deploy_form, fuse_params
from nas_jax.rep.kinds import SEARCHABLE_KINDS
from nas_jax.repnas.genotype import GENOTYPE_FILE, plot_heatmap, plot_mask_trace, read_genotype_mask, write_genotype
from nas_jax.repnas.searchable import SearchableLayer, find_searchable_layers, static_branch_mask
from nas_jax.repnas.masks import BranchBudget
from nas_jax.repnas.task import (RepNASTask, SearchSchedule, SearchStability, alpha_gradient_t, alpha_optimizer,
                                fixed_phase_start)
from nas_jax.train.checkpoint import Restored, save_deploy
from nas_jax.train.loop import train
from nas_jax.train.run import Run, total_steps
from nas_jax.train.task import ClassificationTask
from nas_jax.train.step import create_mesh, data_sharding, replicated, shard_batch

REPORT_FILE = "report.json"
SEARCH_CHECKPOINT_DIR = "search_checkpoints"
FIXED_MASKS = ("searched", "random", "one_shot")
SEARCHED_MASKS = ("searched", "one_shot")  # masks chosen at the fix step of a search
FIXED_STARTS = ("search", "scratch")


def supernet_model(config, num_classes: int):
    if config.block not in SEARCHABLE_KINDS:
        raise ValueError(f"a RepNAS config needs block in {SEARCHABLE_KINDS} (the exact or the online RepNAS "
                         f"block), got block={config.block!r}; set --config.block=repnas")
    return create_model(config.model, block=config.block, num_classes=num_classes, width=config.width,
                        dtype=jnp.dtype(config.dtype))


def build_task(config: ml_collections.ConfigDict, train_data: Pipeline, model=None) -> RepNASTask:
    """The search task of ``config`` (its ``repnas`` section) on ``model`` (default: the
    config's zoo model with ``block='repnas'``; any linen model built with
    ``nas_jax.models.conv_block`` and having ``block`` / ``branch_mask`` attributes works).
    Every setting is checked here, so a bad one fails before any training."""
    if "repnas" not in config:
        raise ValueError("config has no 'repnas' section: not a RepNAS config")
    r = config.repnas
    if r.fixed_mask not in FIXED_MASKS and not os.path.isfile(r.fixed_mask):
        raise ValueError(f"repnas.fixed_mask={r.fixed_mask!r}: neither one of {FIXED_MASKS} nor an existing "
                         "genotype.json file")
    if r.one_shot_candidates < 1 or r.one_shot_examples < 1:
        raise ValueError(f"repnas.one_shot_candidates={r.one_shot_candidates} and one_shot_examples="
                         f"{r.one_shot_examples} must both be >= 1")
    if r.fixed_start not in FIXED_STARTS:
        raise ValueError(f"repnas.fixed_start={r.fixed_start!r}; choose one of {FIXED_STARTS}")
    model = model or supernet_model(config, train_data.num_classes)
    layers = find_searchable_layers(model, (1,) + tuple(train_data.image_shape))
    if r.fixed_mask not in FIXED_MASKS:  # a genotype file: its layers must be this model's
        read_genotype_mask(r.fixed_mask, [layer.path for layer in layers])
    costs = np.stack([layer.branch_macs() for layer in layers])
    budget = BranchBudget(len(layers), r.kept_ratio, r.budget, r.per_layer_cap, costs)
    steps_per_epoch = train_data.num_examples // config.batch_size
    schedule = SearchSchedule(int(round(r.random_epochs * steps_per_epoch)),
                              int(round(r.search_epochs * steps_per_epoch)), total_steps(config, train_data))
    tx = alpha_optimizer(r.alpha_learning_rate, r.alpha_b1, r.alpha_b2, r.alpha_weight_decay)
    stability = SearchStability(r.noise_lifetime, r.noise_final,
                                None if r.branch_scale_init == -1.0 else r.branch_scale_init)
    return RepNASTask(model, layers, budget, schedule, tx, r.branch_compute, config.label_smoothing, stability)


def predict(model, variables, pipeline: Pipeline, batch_size: int, mesh) -> Tuple[np.ndarray, np.ndarray]:
    """Eval-mode logits ``[N, classes]`` and labels ``[N]`` over one pass of ``pipeline``
    (every process's examples, in every process), computed at the highest matmul precision."""
    rep = replicated(mesh)
    apply = jax.jit(lambda v, b: (model.apply(v, b["image"], train=False), b["label"], b["mask"]),
                    in_shardings=(rep, data_sharding(mesh)), out_shardings=rep)
    variables = jax.device_put(variables, rep)
    logits, labels = [], []
    with jax.default_matmul_precision("highest"):
        for batch in pipeline.eval_batches(batch_size):
            out, label, mask = (np.asarray(a) for a in apply(variables, shard_batch(batch, mesh)))
            logits.append(out[mask > 0])
            labels.append(label[mask > 0])
    return np.concatenate(logits), np.concatenate(labels)


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def plain_params(model, image_shape) -> int:
    """Parameters of ``model`` as a plain conv-BN network (``block='plain'``)."""
    model = model.clone(block="plain", branch_mask=())
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                            jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32))
    return count_params(shapes["params"])


def fuse_and_report(model: nn.Module, layers: Sequence[SearchableLayer], variables, mask, settings: Dict,
                    workdir: str, eval_data: Pipeline, eval_batch_size: int, alphas=None,
                    extra_report: Optional[Dict] = None) -> Dict:
    """Writes the genotype of ``mask`` [L, 6] over the searchable ``layers`` of the RepNAS
    ``model``, fuses that fixed sub-network, evaluates both forms on ``eval_data`` and writes
    ``deploy/``, ``deploy.json`` and ``report.json``. ``settings``: ``model``, ``width``,
    ``dtype`` (recorded in ``deploy.json`` and the report)."""
    mesh = create_mesh()
    mask = np.asarray(mask) > 0
    write_genotype(os.path.join(workdir, GENOTYPE_FILE), layers, mask, alphas)
    fixed = model.clone(branch_mask=static_branch_mask([layer.path for layer in layers], mask))
    variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    input_shape = (1,) + tuple(eval_data.image_shape)
    deploy_model = deploy_form(fixed)
    with jax.default_matmul_precision("highest"):
        deploy_variables = jax.jit(lambda v: fuse_params(fixed, v, input_shape=input_shape)[1])(variables)
    trained_logits, labels = predict(fixed, variables, eval_data, eval_batch_size, mesh)
    fused_logits, _ = predict(deploy_model, deploy_variables, eval_data, eval_batch_size, mesh)
    deploy_dir = save_deploy(workdir, deploy_variables, {
        "model": settings["model"], "width": settings["width"], "num_classes": eval_data.num_classes,
        "dtype": settings["dtype"]})
    report = {
        "model": settings["model"], "width": settings["width"], "eval_split": eval_data.split,
        "supernet_test_accuracy": float(np.mean(trained_logits.argmax(-1) == labels)),
        "fused_test_accuracy": float(np.mean(fused_logits.argmax(-1) == labels)),
        "fused_vs_supernet_max_abs_logit_diff": float(np.abs(trained_logits - fused_logits).max()),
        "test_examples": int(len(labels)),
        "deploy_params": count_params(deploy_variables["params"]),
        "plain_params": plain_params(model, eval_data.image_shape),
        "kept_branches": int(mask.sum()), "total_branches": int(mask.size),
        "identity_branches": int(sum(layer.has_identity for layer in layers)),
        "deploy_dir": deploy_dir, **(extra_report or {})}
    write_json_atomic(os.path.join(workdir, REPORT_FILE), report, indent=2)
    return report


def search(config: ml_collections.ConfigDict, workdir: str, *, model=None, stop_at_step: Optional[int] = None,
           progress_bar: Optional[bool] = None) -> Optional[Dict]:
    """Runs (or resumes) the whole job on ``model`` (see ``build_task``); returns the
    report, or None when ``stop_at_step`` ended it before the last step (as a kill would).

    Two runs of the training loop share the schedule: the search (``SEARCH_CHECKPOINT_DIR``)
    to ``fix_step``, then the fixed sub-network (``checkpoints/``), a plain supervised
    task started from the search's last state (``fixed_phase_start``), or with
    ``repnas.fixed_start='scratch'`` trained the whole schedule from a fresh initialisation
    (the search skipped when the mask does not come from it)."""
    start = time.perf_counter()
    run = Run(config, workdir, job="repnas")
    task = build_task(config, run.train_data, model)
    schedule, r = task.schedule, config.repnas
    extra = None
    if r.fixed_mask in SEARCHED_MASKS or r.fixed_start == "search":
        searched = train(run, task, until=schedule.fix_step, checkpoint_dir=SEARCH_CHECKPOINT_DIR,
                         stop_at_step=stop_at_step, progress_bar=progress_bar)
        if int(jax.device_get(searched.step)) < schedule.fix_step:
            return None
        extra = jax.device_get(searched.extra)
    one_shot = None
    if r.fixed_mask == "one_shot":
        mask, one_shot = one_shot_mask(run, task, searched)
    else:
        mask = chosen_mask(config, task, extra)
    fixed_task = ClassificationTask(task.fixed_model(mask), config.label_smoothing)

    def from_search() -> Restored:
        restored = run.latest_checkpoint(task, SEARCH_CHECKPOINT_DIR)
        return restored._replace(state=fixed_phase_start(restored.state))

    state = train(run, fixed_task, start_from=from_search if r.fixed_start == "search" else None,
                  stop_at_step=stop_at_step, progress_bar=progress_bar)
    step = int(jax.device_get(state.step))
    if step < schedule.total_steps:
        return None
    variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    eval_data = run.pipeline(r.test_split)
    settings = {"model": config.model, "width": config.width, "dtype": config.dtype}
    report = {"steps": step, "random_steps": schedule.random_steps, "search_steps": schedule.search_steps,
              "fix_step": schedule.fix_step, "kept_ratio": r.kept_ratio, "budget": r.budget,
              "fixed_mask": r.fixed_mask, "fixed_start": r.fixed_start}
    if one_shot is not None:
        report["one_shot"] = one_shot
    if extra is not None and schedule.search_steps > 0:  # search_epochs=0 (one-shot): no search to picture
        plot_search(workdir, config, task, extra, mask)
        report["alpha_gradient"] = gradient_summary(extra)
    report["wall_s"] = time.perf_counter() - start
    return fuse_and_report(task.model, task.layers, variables, mask, settings, workdir, eval_data,
                           config.eval_batch_size, None if extra is None else extra["alphas"], report)


def chosen_mask(config, task: RepNASTask, extra) -> np.ndarray:
    """The bool ``[L, 6]`` mask the fixed phase trains (``repnas.fixed_mask``, but for
    ``'one_shot'``: ``one_shot_mask``): the searched top-k of ``extra``'s alphas, a random
    one under the same budget, or a genotype file's."""
    r = config.repnas
    if r.fixed_mask == "searched":
        return task.fixed_mask(extra)
    if r.fixed_mask == "random":
        return task.random_mask(config.seed if r.random_mask_seed < 0 else r.random_mask_seed)
    return read_genotype_mask(r.fixed_mask, task.paths)


def one_shot_mask(run: Run, task: RepNASTask, state) -> Tuple[np.ndarray, Dict]:
    """``repnas.fixed_mask='one_shot'``: of ``one_shot_candidates`` random masks (drawn from
    the config's seed, ``RepNASTask.random_masks``), the one with which the supernet in
    ``state`` (the search at its fix step) has the lowest loss (``RepNASTask.mask_scores``)
    on the first ``one_shot_examples`` images of the eval split, rounded down to a multiple
    of the device count and scored over the whole mesh, so every process picks the same.
    Returns the bool ``[L, 6]`` mask and the record for ``report.json``."""
    config, mesh = run.config, run.mesh
    data = run.pipeline(config.eval_split)
    examples = min(config.repnas.one_shot_examples, data.num_examples) // mesh.size * mesh.size
    if examples == 0:
        raise ValueError(f"repnas.one_shot_examples={config.repnas.one_shot_examples} gives no batch over "
                         f"{mesh.size} devices ({data.num_examples} examples in {config.eval_split!r}); use at "
                         f"least {mesh.size}")
    batch = next(iter(data.eval_batches(examples)))
    candidates = task.random_masks(config.seed, config.repnas.one_shot_candidates)
    rep = replicated(mesh)
    score = jax.jit(task.mask_scores, in_shardings=(rep, rep, rep, data_sharding(mesh)), out_shardings=rep)
    losses, accuracies = map(np.asarray, jax.device_get(score(
        state.params, state.batch_stats, candidates,
        shard_batch({"image": batch["image"], "label": batch["label"]}, mesh))))
    best = int(np.argmin(losses))
    return candidates[best], {"candidates": len(candidates), "examples": examples, "split": config.eval_split,
                              "losses": losses.tolist(), "accuracies": accuracies.tolist(), "chosen": best}


def plot_search(workdir: str, config, task: RepNASTask, extra, mask) -> None:
    """The search's pictures: alphas, kept fraction, mask trace, alpha gradient t."""
    schedule = task.schedule
    plot_heatmap(os.path.join(workdir, "alphas.png"), extra["alphas"], task.layers,
                 f"{config.model}: alphas after {schedule.search_steps} search steps", mask, "alpha")
    frequency = extra["kept_steps"] / max(float(extra["search_steps"]), 1.0)
    plot_heatmap(os.path.join(workdir, "mask_frequency.png"), frequency, task.layers,
                 f"fraction of the {int(extra['search_steps'])} search steps each branch was kept",
                 mask, "kept fraction")
    plot_mask_trace(os.path.join(workdir, "mask_trace.png"), extra["mask_trace"], task.layers,
                    schedule.random_steps, schedule.fix_step)
    plot_heatmap(os.path.join(workdir, "alpha_gradient_t.png"), alpha_gradient_t(extra), task.layers,
                 "t statistic of each alpha's gradient over the steps that kept its branch", mask, "t")


def gradient_summary(extra) -> Dict:
    """How much of the alphas' training signal is signal. Each branch with a t statistic
    (``alpha_gradient_t``) gets a two-sided p-value (Student's t, ``kept_steps - 1``
    degrees of freedom); were every gradient pure noise, 5% of them would fall below
    0.05, and ``binomial_p`` is the chance of at least as many by noise alone."""
    from scipy import stats

    t = alpha_gradient_t(extra)
    tested = np.isfinite(t)
    n = np.asarray(extra["kept_steps"], np.float64)[tested]
    p = 2.0 * stats.t.sf(np.abs(t[tested]), n - 1.0)
    significant = int(np.sum(p < 0.05))
    return {"branches_tested": int(tested.sum()), "significant_at_0.05": significant,
            "fraction_significant": float(significant / max(tested.sum(), 1)), "under_pure_noise": 0.05,
            "binomial_p": float(stats.binomtest(significant, int(tested.sum()), 0.05, "greater").pvalue)
            if tested.any() else None}


def summary(report: Dict, workdir: str) -> str:
    """The lines printed at the end of ``nas-jax repnas``."""
    return "\n".join([
        f"RepNAS {report['model']} (width {report['width']}): kept {report['kept_branches']} of "
        f"{report['total_branches']} branches",
        f"  {report['eval_split']} accuracy: fused {report['fused_test_accuracy']:.4f}, trained "
        f"{report['supernet_test_accuracy']:.4f} (max |logit diff| "
        f"{report['fused_vs_supernet_max_abs_logit_diff']:.2e})",
        f"  deploy params {report['deploy_params']:,} (plain conv-BN network {report['plain_params']:,}); "
        f"wall {report.get('wall_s', 0.0):.0f} s",
        f"  files in {os.path.abspath(workdir)}: report.json, genotype.json, alphas.png, mask_frequency.png, "
        f"mask_trace.png, alpha_gradient_t.png, deploy/, metrics.jsonl, training_curve.png"])
