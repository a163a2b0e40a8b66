"""The searchers behind one interface: ``propose(iteration, history)`` -> candidates
[K, P] (grid indices, within a hard budget; K = 0 ends the search), then
``observe(candidates, scores [K])``. Randomness comes from ``(seed, iteration)`` only, so a
search is reproducible and a resumed one proposes what the uninterrupted one would.
``state_json()`` / ``load_state_json`` carry what is not in the history (the RL policy).

- ``uniform``: the largest uniform width within the budget (one evaluation).
- ``random``: ``batch`` uniform draws from the grid per iteration.
- ``evolution`` (MetaPruning): a random first population, then each generation
  ``mutations`` children of the ``top_k`` best candidates so far (each gene redrawn with
  ``mutation_prob``) and ``crossovers`` children of two of them (each gene from either);
  candidates already evaluated are redrawn (at most ``10 x`` the count).
- ``rl``: ``batch`` actions per iteration from the policy (``policy.Policy``), rewarded
  with their scores.
"""
from __future__ import annotations

from typing import Optional

import jax
import numpy as np

from nas_jax.pruning.search.history import History
from nas_jax.pruning.search.policy import Policy
from nas_jax.pruning.search.space import SearchSpace

METHODS = ("uniform", "random", "evolution", "rl")


class Searcher:
    def __init__(self, space: SearchSpace, seed: int):
        self.space, self.seed = space, seed

    def rng(self, iteration: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, iteration])

    def propose(self, iteration: int, history: History) -> np.ndarray:
        raise NotImplementedError

    def observe(self, candidates: np.ndarray, scores: np.ndarray) -> None:
        """Learns from evaluated ``candidates``; only the RL searcher does."""

    def state_json(self) -> Optional[str]:
        return None

    def load_state_json(self, text: Optional[str]) -> None:
        """Restores ``state_json()``'s output."""


class UniformSearcher(Searcher):
    def propose(self, iteration, history):
        return self.space.largest_uniform()[None] if iteration == 0 else np.zeros((0, self.space.num_groups), int)


class RandomSearcher(Searcher):
    def __init__(self, space, seed, batch: int):
        super().__init__(space, seed)
        self.batch = batch

    def propose(self, iteration, history):
        return self.space.random(self.rng(iteration), self.batch)


class EvolutionSearcher(Searcher):
    def __init__(self, space, seed, population: int, top_k: int, mutations: int, mutation_prob: float,
                 crossovers: int):
        super().__init__(space, seed)
        self.population, self.top_k = population, top_k
        self.mutations, self.mutation_prob, self.crossovers = mutations, mutation_prob, crossovers

    def _unique(self, draw, count: int, seen: set) -> list:
        """Up to ``count`` new candidates from ``draw()`` ([P], before the budget), at most
        ``10 * count`` draws."""
        out = []
        for _ in range(10 * count):
            if len(out) == count:
                break
            candidate = tuple(self.space.constrain(draw()[None])[0])
            if candidate not in seen:
                seen.add(candidate)
                out.append(candidate)
        return out

    def propose(self, iteration, history):
        rng, seen = self.rng(iteration), history.seen()
        space = self.space
        if len(history) == 0:
            children = self._unique(lambda: rng.integers(0, space.num_choices, space.num_groups),
                                    self.population, seen)
        else:
            scores, choices = history.array("score"), history.array("choices")
            top = choices[np.argsort(-scores, kind="stable")[:self.top_k]]

            def mutate():
                parent = top[rng.integers(len(top))]
                redraw = rng.random(space.num_groups) < self.mutation_prob
                return np.where(redraw, rng.integers(0, space.num_choices, space.num_groups), parent)

            def cross():
                a, b = top[rng.integers(len(top), size=2)]
                return np.where(rng.random(space.num_groups) < 0.5, a, b)

            children = self._unique(mutate, self.mutations, seen) + self._unique(cross, self.crossovers, seen)
        return np.asarray(children, np.int64).reshape(-1, space.num_groups)


class RLSearcher(Searcher):
    def __init__(self, space, seed, states: np.ndarray, batch: int, **policy_options):
        super().__init__(space, seed)
        self.batch = batch
        self.policy = Policy(states, space.num_choices, seed, **policy_options)

    def propose(self, iteration, history):
        key = jax.random.fold_in(jax.random.key(self.seed), iteration)
        return self.space.constrain(self.policy.sample(key, self.batch))

    def observe(self, candidates, scores):
        self.policy.update(candidates, scores)

    def state_json(self):
        return self.policy.to_text()

    def load_state_json(self, text):
        self.policy.from_text(text)
