"""The search loop under an evaluation budget, its checkpoint, and ``best.json``.

A search's directory holds ``state.json`` (rewritten atomically every
``checkpoint_every`` iterations and at the end): ``settings`` (method, budget, seed and
the search config; a resumed search must match them), ``iteration``, ``wall_s``,
``history`` (``history.History``) and ``searcher`` (the RL policy's parameters, optimiser
state and baseline, serialised). A killed search started again with the same settings
goes on from its last checkpoint and ends with the same result as an uninterrupted one.

``best.json`` is a widths file (``nas_jax.pruning.widths``: ``model``, ``groups``,
``channels``, so ``nas-jax prune export --widths`` takes it) plus ``widths`` (the same
ratios), ``method``, ``budget``, ``seed``, ``flops_ratio``, ``params_ratio`` (and
``latency_ratio`` when the search has a latency table),
``val_accuracy`` (held-out accuracy), ``evaluations`` (candidates scored),
``unique_evaluations`` and ``wall_s`` (seconds of searching, summed over resumptions).
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional

import numpy as np

from nas_jax.common import write_json_atomic
from nas_jax.pruning.search.evaluate import CandidateEvaluator
from nas_jax.pruning.search.history import History
from nas_jax.pruning.search.searchers import Searcher
from nas_jax.pruning.search.space import SearchSpace
from nas_jax.pruning.widths import full_channels

STATE_FILE, BEST_FILE = "state.json", "best.json"


def _restore(directory: str, settings: dict, searcher: Searcher, num_groups: int):
    """(iteration, wall_s, history) from ``directory``'s checkpoint, or a fresh start."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.isfile(path):
        return 0, 0.0, History(num_groups)
    with open(path) as f:
        doc = json.load(f)
    if doc["settings"] != settings:
        raise ValueError(f"{path} holds another search ({doc['settings']}); remove it or use another directory")
    searcher.load_state_json(doc["searcher"])
    return doc["iteration"], doc["wall_s"], History.from_json(doc["history"])


def best_document(space: SearchSpace, history: History, settings: dict, wall_s: float) -> dict:
    """The ``best.json`` document of a search (see the module doc)."""
    index = history.best_index(space.fits(history.array("choices")))
    choices = history.array("choices")[index]
    ratios = space.ratios(choices[None])[0]
    graph = space.graph
    widths = {graph.groups[g].name: float(ratios[g]) for g in graph.prunable_groups}
    full = full_channels(graph)
    cost_ratios = {f"{m}_ratio": float(cost[0] / space.full_cost[m])
                   for m, cost in space.costs(choices[None]).items()}
    return {"model": graph.model_name, "groups": widths, "widths": widths,
            "channels": {graph.groups[g].name: int(full[g]) for g in graph.prunable_groups},
            "method": settings["method"], "budget": settings["budget"], "seed": settings["seed"], **cost_ratios,
            "val_accuracy": float(history.array("accuracy")[index]),
            "evaluations": len(history), "unique_evaluations": len(history.seen()), "wall_s": wall_s}


def run_search(space: SearchSpace, evaluator: CandidateEvaluator, searcher: Searcher, directory: str,
               settings: dict, evaluations: int, checkpoint_every: int,
               log: Optional[Callable[[int, History], None]] = None) -> dict:
    """Searches until ``evaluations`` candidates are scored (or the searcher stops),
    checkpointing into ``directory``; returns and writes ``best.json``. ``log(iteration,
    history)`` is called after every iteration."""
    os.makedirs(directory, exist_ok=True)
    iteration, wall_s, history = _restore(directory, settings, searcher, space.num_groups)
    cache = dict(zip(map(tuple, history.array("choices")), history.array("accuracy")))

    def save():
        write_json_atomic(os.path.join(directory, STATE_FILE),
                    {"settings": settings, "iteration": iteration, "wall_s": wall_s,
                     "history": history.to_json(), "searcher": searcher.state_json()})

    while len(history) < evaluations:
        start = time.perf_counter()
        candidates = searcher.propose(iteration, history)[:evaluations - len(history)]
        if len(candidates) == 0:
            break
        new = list(dict.fromkeys(c for c in map(tuple, candidates) if c not in cache))
        if new:
            cache.update(zip(new, evaluator(space.channels(np.asarray(new)))))
        accuracy = np.asarray([cache[tuple(c)] for c in candidates])
        scores = space.score(accuracy, candidates)
        searcher.observe(candidates, scores)
        costs = space.costs(candidates)
        history.extend(choices=candidates, accuracy=accuracy, score=scores,
                       flops_ratio=costs["flops"] / space.full_cost["flops"],
                       params_ratio=costs["params"] / space.full_cost["params"],
                       iteration=np.full(len(candidates), iteration))
        iteration += 1
        wall_s += time.perf_counter() - start
        if iteration % checkpoint_every == 0:
            save()
        if log is not None:
            log(iteration, history)
    save()
    best = best_document(space, history, settings, wall_s)
    write_json_atomic(os.path.join(directory, BEST_FILE), best)
    return best
