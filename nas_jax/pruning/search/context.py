"""A search set up from a ``nas-jax prune train`` work directory: the trained
PruningNet, its held-out and calibration data, the evaluator, space and searcher."""
from __future__ import annotations

import itertools
import os
from typing import Callable, Dict, Optional

import ml_collections
import numpy as np

from nas_jax.data import Pipeline
from nas_jax.data.splits import shared_examples
from nas_jax.pruning.workdir import calibration_images, restore_params
from nas_jax.pruning.search.driver import run_search
from nas_jax.pruning.search.evaluate import CandidateEvaluator, stack_batches
from nas_jax.pruning.search.latency import cached_latency_table
from nas_jax.pruning.search.policy import group_states
from nas_jax.pruning.search.searchers import (METHODS, EvolutionSearcher, RandomSearcher, RLSearcher, Searcher,
                                              UniformSearcher)
from nas_jax.pruning.search.space import Budget, SearchSpace
from nas_jax.pruning.task import PruningTask
from nas_jax.train.run import pipeline_from_config


def holdout_batches(config, search: ml_collections.ConfigDict,
                    pipeline: Optional[Callable[[str], Pipeline]] = None) -> Dict[str, np.ndarray]:
    """The held-out evaluation batches, stacked (``evaluate`` layout). Refuses the test
    split and any holdout that shares examples with the PruningNet's training split.
    ``pipeline(split)``: where the splits come from (default: built from ``config``)."""
    pipeline = pipeline or (lambda split: pipeline_from_config(config, split))
    if search.holdout_split == "test":
        raise ValueError("candidates must not be ranked on the test split; choose another holdout_split")
    shared = shared_examples(config.train_split, search.holdout_split,
                             lambda split: pipeline(split).num_examples, search.holdout_examples)
    if shared:
        raise ValueError(
            f"the search's holdout ({search.holdout_split!r}"
            f"{f', first {search.holdout_examples} examples' if search.holdout_examples > 0 else ''}) shares "
            f"{shared} examples with the split the PruningNet trained on ({config.train_split!r}), so it would "
            "rank candidates on training data; hold out another split, or train the PruningNet without those "
            "examples (e.g. train_split='train[10000:]' and holdout_split='train[:10000]')")
    batches = pipeline(search.holdout_split).eval_batches(config.eval_batch_size)
    if search.holdout_examples > 0:
        batches = itertools.islice(batches, -(-search.holdout_examples // config.eval_batch_size))
    return stack_batches(batches)


def make_searcher(method: str, space: SearchSpace, search: ml_collections.ConfigDict, task: PruningTask,
                  params) -> Searcher:
    seed = search.seed
    if method == "uniform":
        return UniformSearcher(space, seed)
    if method == "random":
        return RandomSearcher(space, seed, search.random.batch)
    if method == "evolution":
        return EvolutionSearcher(space, seed, **search.evolution.to_dict())
    if method == "rl":
        options = search.rl.to_dict()
        return RLSearcher(space, seed, group_states(task, params), options.pop("batch"), **options)
    raise ValueError(f"unknown search method {method!r}; choose one of {METHODS}")


class SearchContext:
    """What every search on one trained PruningNet shares: its run config, task and
    parameters, and one compiled ``CandidateEvaluator`` (held-out data, ``chunk`` and
    ``vmap_width`` of the search config it is made with)."""

    def __init__(self, workdir: str, search: ml_collections.ConfigDict):
        self.workdir = workdir
        run, self.task, self.params = restore_params(workdir)
        self.config = run.config
        self.evaluator = CandidateEvaluator(self.task, self.params,
                                            np.stack(calibration_images(self.config, run.train_data)),
                                            holdout_batches(self.config, search, run.pipeline), search.chunk,
                                            search.vmap_width)

    def search(self, method: str, budget_text: str, search: ml_collections.ConfigDict, directory: str = "",
               log=None) -> dict:
        """Runs (or resumes) a ``method`` search under ``budget_text`` (``flops=0.5``,
        ``latency=0.5``: the layer latency table is measured first, or reused from
        ``workdir/search/latency_table.json``); results in ``directory`` (default
        ``workdir/search/<method>``). Returns ``best.json``'s document."""
        budget = Budget.parse(budget_text, search.budget_mode, search.penalty)
        latency = None
        if budget.metric == "latency":
            latency = cached_latency_table(os.path.join(self.workdir, "search", "latency_table.json"),
                                           self.task.graph, self.task.grid, **search.latency.to_dict())
        space = SearchSpace(self.task.graph, self.task.grid, budget, latency)
        searcher = make_searcher(method, space, search, self.task, self.params)
        settings = {"method": method, "budget": str(budget), "seed": search.seed, "search": search.to_dict()}
        return run_search(space, self.evaluator, searcher,
                          directory or os.path.join(self.workdir, "search", method), settings,
                          search.evaluations, search.checkpoint_every, log)
