"""RepNAS's global branch-number constraint: scores, the hard top-k mask and the
straight-through branch weights. Arrays are ``[L, 6]``: one row per searchable layer in
network order, one column per primitive in ``PRIMITIVES`` order. Pure and jit-able.

    rank    = alphas + tau * (g1 - g2)         (g1, g2 Gumbel noise, tau 1 as in the paper; no noise at eval)
    mask    = top-k of rank over all layers     (0/1, k = int(L * 6 * kept_ratio))
    weights = mask + sigmoid(rank) - stop_gradient(sigmoid(rank))   (forward value: mask)

Two alternatives to the plain count: a per-layer cap (at most ``per_layer_cap``
branches in a layer: the top-k over each layer's ``per_layer_cap`` best branches, which
is exactly the greedy top-k under the cap) and a cost budget (the best-ranked branches,
in rank order, while their summed cost stays within ``kept_ratio`` of the total cost).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.repnas.searchable import NUM_PRIMITIVES

BUDGETS = ("count", "cost")


@dataclasses.dataclass(frozen=True)
class BranchBudget:
    """How many branches a mask keeps. ``costs`` ``[L, 6]`` (e.g. ``branch_macs``) is
    needed for ``kind='cost'`` only; ``per_layer_cap`` 0 means no cap. Construction
    validates everything, so a bad budget fails before training starts."""
    num_layers: int
    kept_ratio: float = 0.34
    kind: str = "count"
    per_layer_cap: int = 0
    costs: Optional[np.ndarray] = None

    def __post_init__(self):
        if self.num_layers < 1:
            raise ValueError("a RepNAS budget needs at least one searchable layer")
        if not 0.0 < self.kept_ratio <= 1.0:
            raise ValueError(f"kept_ratio must be in (0, 1], got {self.kept_ratio}")
        if self.kind not in BUDGETS:
            raise ValueError(f"unknown budget {self.kind!r}; choose one of {BUDGETS}")
        if not 0 <= self.per_layer_cap <= NUM_PRIMITIVES:
            raise ValueError(f"per_layer_cap must be in [0, {NUM_PRIMITIVES}] (0 = no cap), got {self.per_layer_cap}")
        if self.kind == "cost":
            if self.costs is None or np.shape(self.costs) != (self.num_layers, NUM_PRIMITIVES):
                raise ValueError(f"a cost budget needs costs of shape {(self.num_layers, NUM_PRIMITIVES)}")
            cheapest = float(np.asarray(self.costs).min(axis=1).sum())
            if self.cost_limit < cheapest:
                raise ValueError(f"kept_ratio {self.kept_ratio} gives a cost budget of {self.cost_limit:.4g}, less "
                                 f"than one branch per layer (the cheapest branches cost {cheapest:.4g}); "
                                 f"use kept_ratio >= {cheapest / self.total_cost:.4f}")
            return
        if self.k < self.num_layers:
            raise ValueError(f"kept_ratio {self.kept_ratio} keeps k = int({self.num_layers} * {NUM_PRIMITIVES} * "
                             f"{self.kept_ratio}) = {self.k} branches, less than one per layer "
                             f"({self.num_layers} layers); use kept_ratio >= {1 / NUM_PRIMITIVES:.4f}")
        if self.per_layer_cap and self.k > self.num_layers * self.per_layer_cap:
            raise ValueError(f"k = {self.k} branches do not fit under per_layer_cap {self.per_layer_cap} "
                             f"({self.num_layers} layers hold at most {self.num_layers * self.per_layer_cap})")

    @property
    def total_branches(self) -> int:
        return self.num_layers * NUM_PRIMITIVES

    @property
    def k(self) -> int:
        """The number of kept branches of a count budget (the official ``int(L * 6 * ratio)``)."""
        return int(self.total_branches * self.kept_ratio)

    @property
    def total_cost(self) -> float:
        return float(np.asarray(self.costs, np.float64).sum())

    @property
    def cost_limit(self) -> float:
        return self.kept_ratio * self.total_cost


def gumbel_rank(alphas: jax.Array, rng: Optional[jax.Array], noise_scale=1.0) -> jax.Array:
    """``alphas + noise_scale * (g1 - g2)`` with two independent standard Gumbel draws;
    ``alphas`` when ``rng`` is None (evaluation: no noise)."""
    if rng is None:
        return alphas
    g1, g2 = jax.random.gumbel(rng, (2,) + alphas.shape, alphas.dtype)
    if isinstance(noise_scale, float) and noise_scale == 1.0:
        return alphas + g1 - g2
    return alphas + noise_scale * (g1 - g2)


def _within_layer_order(rank: jax.Array) -> jax.Array:
    """``[L, 6]`` int: 0 for each layer's best-ranked branch, 1 for the next, ..."""
    return jnp.argsort(jnp.argsort(-rank, axis=1), axis=1)


def kept_mask(rank: jax.Array, budget: BranchBudget) -> jax.Array:
    """The 0/1 float32 mask ``[L, 6]`` of the branches ``budget`` keeps for scores ``rank``."""
    if rank.shape != (budget.num_layers, NUM_PRIMITIVES):
        raise ValueError(f"rank of shape {rank.shape}; the budget is for {(budget.num_layers, NUM_PRIMITIVES)}")
    eligible = jnp.ones(rank.shape, bool)
    if budget.per_layer_cap:
        eligible = _within_layer_order(rank) < budget.per_layer_cap
    flat_rank = jnp.where(eligible, rank, -jnp.inf).reshape(-1)
    if budget.kind == "count":
        _, index = jax.lax.top_k(flat_rank, budget.k)
        return jnp.zeros(flat_rank.shape, jnp.float32).at[index].set(1.0).reshape(rank.shape)
    order = jnp.argsort(-flat_rank)
    spent = jnp.cumsum(jnp.asarray(budget.costs, jnp.float32).reshape(-1)[order])
    keep = (spent <= jnp.float32(budget.cost_limit)) & jnp.isfinite(flat_rank[order])
    return jnp.zeros(flat_rank.shape, jnp.float32).at[order].set(keep.astype(jnp.float32)).reshape(rank.shape)


def straight_through(rank: jax.Array, mask: jax.Array) -> jax.Array:
    """``mask + sigmoid(rank) - stop_gradient(sigmoid(rank))``: the value of ``mask``, the
    gradient of ``sigmoid(rank)``."""
    soft = jax.nn.sigmoid(rank)
    return mask + soft - jax.lax.stop_gradient(soft)
