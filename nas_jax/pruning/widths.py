"""Width configurations: one ratio per coupled group, drawn from a grid.

A configuration is a float array ``ratios`` [num_groups] (fixed groups at 1.0); a group
of ``channels`` in steps of ``Group.step`` channels (1 unless a grouped conv or a GroupNorm
splits it into blocks, or it is attention heads) keeps ``step * max(1, round(ratio *
channels / step))`` channels
(round half to even, as NumPy and ``jnp.round``). The functions on arrays work under ``jax.jit`` with traced ratios, so a
training step samples a new configuration without recompiling.

A widths file is JSON: ``{"model": NAME, "groups": {GROUP NAME: RATIO, ...},
"channels": {GROUP NAME: FULL WIDTH, ...}}``; ``channels`` pins the full widths, so a file
made for the same model name at another width multiplier or class count is refused.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Mapping, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.common import write_json_atomic
from nas_jax.pruning.graph import LayerGraph

TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class WidthGrid:
    """The candidate ratios of every prunable group, ascending, in (0, 1]."""
    ratios: Tuple[float, ...]

    def __post_init__(self):
        r = np.asarray(self.ratios, np.float64)
        if r.size == 0 or np.any(r <= 0) or np.any(r > 1 + TOLERANCE) or np.any(np.diff(r) <= 0):
            raise ValueError(f"a width grid needs ascending ratios in (0, 1], got {self.ratios}")

    @classmethod
    def arange(cls, start: float, stop: float, step: float) -> "WidthGrid":
        """``start, start + step, ... <= stop``, e.g. ``arange(0.1, 1.0, 0.1)``."""
        n = int(np.floor((stop - start) / step + TOLERANCE)) + 1
        return cls(tuple(round(start + i * step, 6) for i in range(n)))

    def check(self, ratio: float, where: str = "") -> float:
        """``ratio`` if it is on the grid, else a ``ValueError``."""
        if not np.any(np.abs(np.asarray(self.ratios) - ratio) <= TOLERANCE):
            raise ValueError(f"width {ratio}{' for ' + where if where else ''} is not on the grid "
                             f"{list(self.ratios)}")
        return float(ratio)


def full_channels(graph: LayerGraph) -> np.ndarray:
    """[num_groups] int: each group's unpruned width."""
    return np.asarray([g.channels for g in graph.groups], np.int32)


def group_channels(graph: LayerGraph, ratios) -> jax.Array:
    """[..., num_groups] int32 kept channels for ``ratios`` [..., num_groups] (jit-able)."""
    steps = np.asarray([g.step for g in graph.groups], np.int32)
    per_step = jnp.round(jnp.asarray(ratios) * (full_channels(graph) // steps))
    return (steps * jnp.maximum(1, per_step)).astype(jnp.int32)


def uniform_ratios(graph: LayerGraph, ratio: float) -> np.ndarray:
    """[num_groups] float32: ``ratio`` for every prunable group, 1 for fixed groups."""
    fixed = np.asarray([g.fixed for g in graph.groups])
    return np.where(fixed, 1.0, ratio).astype(np.float32)


def sample_ratios(key: jax.Array, graph: LayerGraph, grid: WidthGrid) -> jax.Array:
    """[num_groups] float32: a uniform draw from the grid for every prunable group."""
    choice = jax.random.randint(key, (len(graph.groups),), 0, len(grid.ratios))
    ratios = jnp.asarray(grid.ratios, jnp.float32)[choice]
    return jnp.where(jnp.asarray([g.fixed for g in graph.groups]), 1.0, ratios)


def ratios_from_mapping(graph: LayerGraph, grid: WidthGrid, by_group: Mapping[str, float],
                        whole_heads: bool = True) -> np.ndarray:
    """[num_groups] float32 from ``{group name: ratio}`` naming every prunable group;
    ``whole_heads``: an attention's group must be given a whole number of heads (a search's
    result is not checked: it holds the ratios its evaluations rounded, as in training)."""
    names = {graph.groups[g].name for g in graph.prunable_groups}
    unknown, missing = sorted(set(by_group) - names), sorted(names - set(by_group))
    if unknown or missing:
        raise ValueError(f"widths do not fit model {graph.model_name!r}: unknown groups {unknown}, "
                         f"missing groups {missing}")
    for g in graph.prunable_groups:
        group = graph.groups[g]
        heads = by_group[group.name] * group.channels / group.unit
        if whole_heads and group.unit > 1 and abs(heads - round(heads)) > TOLERANCE:
            raise ValueError(f"group {group.name} is {group.channels // group.unit} attention heads of {group.unit} "
                             f"channels: width {by_group[group.name]} keeps {heads:g} heads, not a whole number; use "
                             f"a multiple of 1/{group.channels // group.unit}")
    return np.asarray([1.0 if g.fixed else grid.check(by_group[g.name], g.name) for g in graph.groups],
                      np.float32)


def save_widths(path: str, graph: LayerGraph, ratios) -> None:
    ratios = np.asarray(ratios)
    doc = {"model": graph.model_name,
           "groups": {graph.groups[g].name: float(ratios[g]) for g in graph.prunable_groups},
           "channels": {graph.groups[g].name: graph.groups[g].channels for g in graph.prunable_groups}}
    write_json_atomic(path, doc, indent=1)


def load_widths(path: str, graph: LayerGraph, grid: WidthGrid) -> np.ndarray:
    """[num_groups] ratios from a widths file, checked against ``graph`` and ``grid``."""
    with open(path) as f:
        doc = json.load(f)
    if doc.get("model") != graph.model_name:
        raise ValueError(f"{path} is a widths file for model {doc.get('model')!r}, not {graph.model_name!r}")
    expected = {graph.groups[g].name: graph.groups[g].channels for g in graph.prunable_groups}
    if doc.get("channels", expected) != expected:
        raise ValueError(f"{path} was made for {graph.model_name!r} with other full widths "
                         "(another width multiplier or class count)")
    return ratios_from_mapping(graph, grid, doc["groups"], whole_heads="method" not in doc)
