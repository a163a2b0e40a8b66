"""A per-layer latency table measured on the current backend, for latency budgets.

Every layer of the graph (conv, depthwise conv, classifier) is timed alone as the
exported network runs it in inference (conv with bias then ReLU, the classifier a
matmul with bias), on a batch of ``batch`` images at the layer's input resolution, for
``samples`` kept input widths x ``samples`` kept output widths spread evenly from the
grid's smallest ratio to the full width (a depthwise conv, whose input width is its
output width, for ``samples`` widths). A configuration's latency is the sum over layers
of the table interpolated bilinearly at its kept widths: the lookup-table model of AMC
and MetaPruning, cheap enough to score every candidate of a search.

Timing: the median of ``repeats`` calls of a compiled layer, less the median of the same
number of calls of a compiled no-op on the same input (the dispatch cost, which the
whole compiled network pays once, not once per layer). Measurement noise is smoothed by
making each layer's table non-decreasing in both widths (a running maximum), so a
narrower configuration is never predicted slower. Layers with the same shape signature
are timed once.

The table is JSON (``save`` / ``load``) and records what it was measured on
(``backend``, ``device_kind``, ``batch``, ``dtype``) and for which model
(``model``, ``input_shape``, ``full_widths``), so ``cached_latency_table`` measures again
rather than use a table of another machine or model.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.common import compiler_options, write_json_atomic
from nas_jax.pruning.graph import IMAGE, Layer, LayerGraph
from nas_jax.pruning.widths import WidthGrid, full_channels, group_channels


@dataclasses.dataclass
class LatencyTable:
    """``seconds[l]`` [len(in_widths[l]), len(out_widths[l])]: layer ``l``'s measured
    time at kept input width ``in_widths[l][i]`` and output width ``out_widths[l][j]``
    (ascending ints; one entry where the width is fixed)."""
    in_widths: List[List[int]]
    out_widths: List[List[int]]
    seconds: List[np.ndarray]
    meta: Dict[str, object]

    @functools.cached_property
    def _padded(self) -> List[np.ndarray]:
        """``seconds`` with the last row and column repeated once: the neighbour of the last
        sampled width (and of a fixed width's single entry) is itself."""
        return [np.pad(table, ((0, 1), (0, 1)), mode="edge") for table in self.seconds]

    def layer_seconds(self, c_in: np.ndarray, c_out: np.ndarray) -> np.ndarray:
        """[K, num_layers] seconds at kept widths ``c_in``, ``c_out`` [K, num_layers]:
        bilinear between the sampled widths, constant beyond them."""
        out = np.empty(np.shape(c_in), np.float64)
        for layer, (xs, ys, table) in enumerate(zip(self.in_widths, self.out_widths, self._padded)):
            i, s = _bracket(xs, c_in[:, layer])
            j, t = _bracket(ys, c_out[:, layer])
            out[:, layer] = ((1 - s) * (1 - t) * table[i, j] + s * (1 - t) * table[i + 1, j]
                             + (1 - s) * t * table[i, j + 1] + s * t * table[i + 1, j + 1])
        return out

    def total(self, c_in: np.ndarray, c_out: np.ndarray) -> np.ndarray:
        """[K] predicted seconds of whole configurations."""
        return self.layer_seconds(c_in, c_out).sum(axis=1)

    def save(self, path: str) -> None:
        write_json_atomic(path, {"meta": self.meta, "layers": [
            {"in_widths": xs, "out_widths": ys, "seconds": np.asarray(t).tolist()}
            for xs, ys, t in zip(self.in_widths, self.out_widths, self.seconds)]}, indent=1)

    @classmethod
    def load(cls, path: str) -> "LatencyTable":
        with open(path) as f:
            doc = json.load(f)
        layers = doc["layers"]
        return cls([l["in_widths"] for l in layers], [l["out_widths"] for l in layers],
                   [np.asarray(l["seconds"], np.float64) for l in layers], doc["meta"])


def _bracket(points: List[int], values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For ascending ``points`` and ``values`` [K]: the index ``i`` [K] of the sampled
    point at or below each value and its fraction ``s`` [K] in [0, 1] of the way to point
    ``i + 1`` (0 where there is no next point)."""
    points = np.asarray(points, np.float64)
    i = np.clip(np.searchsorted(points, values, side="right") - 1, 0, len(points) - 1)
    nxt = np.minimum(i + 1, len(points) - 1)
    gap = points[nxt] - points[i]
    s = np.where(gap > 0, (np.asarray(values, np.float64) - points[i]) / np.where(gap > 0, gap, 1), 0.0)
    return i, np.clip(s, 0.0, 1.0)


def _meta(graph: LayerGraph, grid: WidthGrid, batch: int, samples: int, repeats: int, dtype: str) -> dict:
    """What a table was measured on and for (JSON types, so a loaded table compares equal)."""
    return {"backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind, "batch": batch,
            "dtype": dtype, "samples": samples, "repeats": repeats, "model": graph.model_name,
            "input_shape": list(graph.input_shape), "full_widths": full_channels(graph).tolist(),
            "grid": list(grid.ratios)}


def _sample_widths(graph: LayerGraph, group: int, grid: WidthGrid, samples: int) -> List[int]:
    """``samples`` kept widths of ``group`` from the grid's smallest ratio to 1 (as
    ``widths.group_channels`` rounds them)."""
    ratios = np.ones((samples, len(graph.groups)), np.float32)
    ratios[:, group] = np.linspace(grid.ratios[0], 1.0, samples)
    return sorted({int(c) for c in np.asarray(group_channels(graph, ratios))[:, group]})


def _median_seconds(fn: Callable, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _signature(layer: Layer, c_in: int, c_out: int) -> tuple:
    """What a layer's time depends on; a depthwise conv's input width is its output width."""
    if layer.kind == "depthwise":
        c_in = c_out
    return (layer.kind, layer.kernel, layer.stride, layer.out_hw, c_in, c_out, layer.groups)


def _layer_fn(layer: Layer, c_in: int, c_out: int, batch: int, dtype) -> Tuple[Callable, tuple]:
    """A compiled inference of ``layer`` at kept widths and its arguments."""
    key = jax.random.key(0)
    bias = jnp.zeros((c_out,), dtype)
    if layer.kind == "dense":
        x = jax.random.normal(key, (batch, c_in), dtype)
        w = jax.random.normal(key, (c_in, c_out), dtype)
        fn = lambda x, w, b: x @ w + b  # noqa: E731
    else:
        groups = c_in if layer.kind == "depthwise" else layer.groups
        h, w_ = (s * layer.stride for s in layer.out_hw)
        x = jax.random.normal(key, (batch, h, w_, c_in), dtype)
        w = jax.random.normal(key, (*layer.kernel, c_in // groups, c_out), dtype)
        fn = lambda x, w, b: jax.nn.relu(jax.lax.conv_general_dilated(  # noqa: E731
            x, w, (layer.stride, layer.stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=groups) + b)
    return jax.jit(fn, compiler_options=compiler_options(True)), (x, w, bias)


def measure_latency_table(graph: LayerGraph, grid: WidthGrid, batch: int = 1, samples: int = 3,
                          repeats: int = 20, dtype: str = "float32",
                          progress: Optional[Callable[[int, int], None]] = None) -> LatencyTable:
    """Times every layer of ``graph`` on the default backend (see the module doc).
    ``progress(done, total)`` is called after each timed shape."""
    if samples < 2 or repeats < 1 or batch < 1:
        raise ValueError(f"need samples >= 2, repeats >= 1, batch >= 1 (got {samples}, {repeats}, {batch})")
    full = full_channels(graph)
    width_options = [[int(full[g])] if graph.groups[g].fixed else _sample_widths(graph, g, grid, samples)
                     for g in range(len(graph.groups))]
    plan = []  # (layer index, in widths, out widths)
    for index, layer in enumerate(graph.layers):
        group_in = graph.in_group(layer)
        outs = width_options[layer.group]
        ins = outs if layer.kind == "depthwise" else (
            [layer.in_channels] if group_in == IMAGE else width_options[group_in])
        plan.append((index, ins, outs))
    shapes = {_signature(graph.layers[index], c_in, c_out): graph.layers[index]
              for index, ins, outs in plan for c_in in ins for c_out in outs}
    noop = jax.jit(lambda x: x)
    measured: Dict[tuple, float] = {}
    for done, (signature, layer) in enumerate(shapes.items(), 1):
        fn, args = _layer_fn(layer, signature[4], signature[5], batch, jnp.dtype(dtype))
        dispatch = _median_seconds(noop, (args[0],), repeats)
        measured[signature] = max(_median_seconds(fn, args, repeats) - dispatch, 1e-9)
        if progress is not None:
            progress(done, len(shapes))
    seconds = []
    for index, ins, outs in plan:
        table = np.asarray([[measured[_signature(graph.layers[index], c_in, c_out)] for c_out in outs]
                            for c_in in ins], np.float64)
        seconds.append(np.maximum.accumulate(np.maximum.accumulate(table, axis=0), axis=1))
    return LatencyTable([p[1] for p in plan], [p[2] for p in plan], seconds,
                        _meta(graph, grid, batch, samples, repeats, dtype))


def cached_latency_table(path: str, graph: LayerGraph, grid: WidthGrid, batch: int = 1, samples: int = 3,
                         repeats: int = 20, dtype: str = "float32",
                         log: Callable[[str], None] = print) -> LatencyTable:
    """The table at ``path`` if it was measured for this model, grid and settings on this
    backend and device kind; else a new measurement, saved at ``path``."""
    wanted = _meta(graph, grid, batch, samples, repeats, dtype)
    if os.path.isfile(path):
        try:
            table = LatencyTable.load(path)
        except (OSError, ValueError, KeyError) as error:
            log(f"latency table {path} is unreadable ({error}); measuring it again")
        else:
            if table.meta == wanted:
                return table
            log(f"latency table {path} was measured for other settings or another device; measuring it again")
    log(f"measuring the latency of every layer on {wanted['backend']} ({wanted['device_kind']}), batch {batch}")
    table = measure_latency_table(graph, grid, batch, samples, repeats, dtype,
                                  lambda done, total: log(f"  {done}/{total} layer shapes timed")
                                  if done == total or done % 20 == 0 else None)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    table.save(path)
    return table
