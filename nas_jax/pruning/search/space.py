"""Width candidates, their exact cost, and the budget they must meet.

A candidate is ``choices`` int [P]: one index into the width grid per prunable group, in
``graph.prunable_groups`` order; a batch of candidates is [K, P]. ``ratios`` [K, num_groups]
puts the fixed groups at 1.0.

Cost is exact and vectorised over candidates: every layer's FLOPs (multiply-accumulates)
and parameters are ``quadratic * c_in * c_out + linear * c_out`` of its kept
input and output widths, with the coefficients of ``nas_jax.pruning.cost``:

=========  ==========================  ===================================
layer      FLOPs                       parameters
=========  ==========================  ===================================
conv       H*W*kh*kw * c_in * c_out    kh*kw * c_in * c_out + 2 * c_out
depthwise  H*W*kh*kw * c_out           (kh*kw + 2) * c_out
dense      c_in * c_out                c_in * c_out + c_out
=========  ==========================  ===================================

Latency (``latency.LatencyTable``, measured on the current backend) is the sum of every
layer's tabulated time at its kept widths; a space has it when it is given a table.

A budget is a fraction of the full model's FLOPs, parameters or latency (``flops=0.5``,
``latency=0.5``). ``hard``:
every proposed candidate is clamped, shrinking its widest groups one grid step at a time
until it fits (AMC's "keep the target reachable"); ``penalty``: candidates are left as
proposed and a searcher's score is ``accuracy - penalty * max(0, cost / limit - 1)``.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import numpy as np

from nas_jax.pruning.cost import input_widths, total_costs
from nas_jax.pruning.graph import LayerGraph
from nas_jax.pruning.search.latency import LatencyTable
from nas_jax.pruning.widths import WidthGrid, full_channels, group_channels

METRICS = ("flops", "params", "latency")
MODES = ("hard", "penalty")


@dataclasses.dataclass(frozen=True)
class Budget:
    """``fraction`` of the full model's ``metric`` (``flops``, ``params`` or ``latency``)."""
    metric: str
    fraction: float
    mode: str = "hard"
    penalty: float = 1.0

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"budget metric must be one of {METRICS}, not {self.metric!r}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"budget fraction must be in (0, 1], not {self.fraction}")
        if self.mode not in MODES:
            raise ValueError(f"budget mode must be one of {MODES}, not {self.mode!r}")

    @classmethod
    def parse(cls, text: str, mode: str = "hard", penalty: float = 1.0) -> "Budget":
        """``'flops=0.5'``, ``'params=0.25'`` or ``'latency=0.5'``."""
        metric, sep, value = text.partition("=")
        try:
            fraction = float(value)
        except ValueError:
            fraction = None
        if not sep or fraction is None:
            raise ValueError(f"a budget reads METRIC=FRACTION (flops=0.5, params=0.25, latency=0.5), not {text!r}")
        return cls(metric.strip(), fraction, mode, penalty)

    def __str__(self) -> str:
        return f"{self.metric}={self.fraction:g}"


class SearchSpace:
    """The candidates of ``graph`` on ``grid`` under ``budget``; ``latency``: the layer
    latency table (needed by a latency budget). Raises ``ValueError`` when the budget is
    below the smallest configuration's cost."""

    def __init__(self, graph: LayerGraph, grid: WidthGrid, budget: Budget,
                 latency: Optional[LatencyTable] = None):
        if budget.metric == "latency" and latency is None:
            raise ValueError("a latency budget needs a latency table of the model "
                             "(nas_jax.pruning.search.latency.cached_latency_table)")
        if latency is not None and latency.meta.get("full_widths") != [g.channels for g in graph.groups]:
            raise ValueError(f"the latency table was measured for model {latency.meta.get('model')!r} with "
                             f"other widths, not for {graph.model_name!r}")
        self.graph, self.grid, self.budget, self.latency = graph, grid, budget, latency
        self.prunable = np.asarray(graph.prunable_groups, np.int64)
        self.num_groups, self.num_choices = len(self.prunable), len(grid.ratios)
        self._full = full_channels(graph).astype(np.int64)
        self._out_group = np.asarray([layer.group for layer in graph.layers])
        self.full_cost = {m: float(v[0]) for m, v in self.costs(self.full_choices()[None]).items()}
        self.limit = budget.fraction * self.full_cost[budget.metric]
        smallest = self.cost_ratio(np.zeros((1, self.num_groups), np.int64))[0]
        if smallest > budget.fraction + 1e-9:
            raise ValueError(f"budget {budget} is impossible: the smallest configuration (every group at "
                             f"{grid.ratios[0]:g}) needs {smallest:.4f} of the full model's {budget.metric}")

    def full_choices(self) -> np.ndarray:
        return np.full((self.num_groups,), self.num_choices - 1, np.int64)

    def ratios(self, choices) -> np.ndarray:
        """[K, num_groups] float32 ratios of ``choices`` [K, P]."""
        choices = np.asarray(choices, np.int64)
        out = np.ones((choices.shape[0], len(self.graph.groups)), np.float32)
        out[:, self.prunable] = np.asarray(self.grid.ratios, np.float32)[choices]
        return out

    def channels(self, choices) -> np.ndarray:
        """[K, num_groups] int64 kept channels (``widths.group_channels``)."""
        return np.asarray(group_channels(self.graph, self.ratios(choices)), np.int64)

    def costs(self, choices) -> Dict[str, np.ndarray]:
        """``{'flops': [K], 'params': [K]}`` float64 exact costs of ``choices`` [K, P],
        and ``'latency'`` [K] predicted seconds when the space has a latency table."""
        channels = self.channels(choices)
        out = {m: v.astype(np.float64) for m, v in total_costs(self.graph, channels).items()}
        if self.latency is not None:
            out["latency"] = self.latency.total(input_widths(self.graph, channels), channels[:, self._out_group])
        return out

    def cost_ratio(self, choices) -> np.ndarray:
        """[K] the budget metric as a fraction of the full model's."""
        return self.costs(choices)[self.budget.metric] / self.full_cost[self.budget.metric]

    def fits(self, choices) -> np.ndarray:
        """[K] bool: within the budget."""
        return self.costs(choices)[self.budget.metric] <= self.limit * (1 + 1e-9)

    def clamp(self, choices) -> np.ndarray:
        """[K, P]: each candidate over the budget with its widest groups (largest grid
        index, ties to the group of most full channels) shrunk one step at a time until it
        fits. A candidate within the budget is unchanged."""
        choices = np.array(choices, np.int64, copy=True)
        tie_break = np.argsort(np.argsort(self._full[self.prunable], kind="stable"), kind="stable")
        over = ~self.fits(choices)
        while over.any():
            rows = np.flatnonzero(over)
            widest = np.argmax(choices[rows] * self.num_groups + tie_break, axis=1)
            choices[rows, widest] -= 1
            over[rows] = ~self.fits(choices[rows])
        return choices

    def constrain(self, choices) -> np.ndarray:
        """``clamp`` for a hard budget; unchanged for a penalty."""
        return self.clamp(choices) if self.budget.mode == "hard" else np.asarray(choices, np.int64)

    def score(self, accuracy, choices) -> np.ndarray:
        """[K] what a searcher maximises: the accuracy, less the penalty of a penalty budget."""
        accuracy = np.asarray(accuracy, np.float64)
        if self.budget.mode == "hard":
            return accuracy
        excess = np.maximum(0.0, self.costs(choices)[self.budget.metric] / self.limit - 1.0)
        return accuracy - self.budget.penalty * excess

    def largest_uniform(self) -> np.ndarray:
        """[P] the largest uniform width within the budget."""
        for index in range(self.num_choices - 1, -1, -1):
            choice = np.full((1, self.num_groups), index, np.int64)
            if self.fits(choice)[0]:
                return choice[0]
        raise ValueError(f"no uniform width meets budget {self.budget}")

    def random(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """[count, P] uniform draws from the grid, constrained."""
        return self.constrain(rng.integers(0, self.num_choices, (count, self.num_groups)))
