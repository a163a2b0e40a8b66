"""A width configuration as a real, smaller zoo network.

``export_network`` crops every array of the masked full-width variables (conv kernels
HWIO on their input and output axes, a depthwise kernel on its output axis only,
BatchNorm vectors and conv biases on the output axis, the classifier's kernel on its
input axis) and builds the plain zoo model with per-layer width overrides
(``BlockSpec.widths``; depthwise layers follow their input). With the same BatchNorm
statistics it computes what ``masked_apply`` computes for that configuration.
It is written to disk with ``nas_jax.models.network.save_network``.
"""
from __future__ import annotations

from typing import Tuple

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from nas_jax.pruning.cost import layer_widths
from nas_jax.pruning.graph import LayerGraph
from nas_jax.models.network import ZooSpec


def width_overrides(graph: LayerGraph, channels) -> Tuple[Tuple[str, int], ...]:
    """``((layer path, out channels), ...)`` for every prunable non-depthwise layer."""
    widths = layer_widths(graph, channels)
    return tuple((layer.path, int(widths[i, 1])) for i, layer in enumerate(graph.layers)
                 if layer.kind == "conv" and not graph.groups[layer.group].fixed)


def _crop(array, layer, c_in: int, c_out: int):
    if array.ndim == 4:  # conv kernel HWIO
        return array[:, :, :array.shape[2] if layer.kind == "depthwise" else c_in, :c_out]
    if array.ndim == 2:  # classifier kernel [in, out]
        return array[:c_in, :c_out]
    return array[:c_out]


def crop_variables(graph: LayerGraph, variables, channels) -> dict:
    """Every collection of ``variables`` (full-width, laid out by layer path) cropped to
    ``channels`` [num_groups]."""
    widths = layer_widths(graph, channels)
    by_path = {tuple(layer.path.split("/")): i for i, layer in enumerate(graph.layers)}
    flat = traverse_util.flatten_dict(jax.device_get(variables))
    cropped = {}
    for key, array in flat.items():
        owner = next((key[1:1 + len(p)] for p in by_path if key[1:1 + len(p)] == p), None)
        if owner is None:
            raise ValueError(f"variable {'/'.join(key)} belongs to no layer of the graph")
        i = by_path[owner]
        cropped[key] = np.asarray(_crop(array, graph.layers[i], *widths[i]))
    return traverse_util.unflatten_dict(cropped)


def export_network(spec: ZooSpec, graph: LayerGraph, variables, channels) -> Tuple[nn.Module, dict]:
    """(plain zoo model at ``channels``, its cropped variables)."""
    return spec.model("plain", width_overrides(graph, channels)), crop_variables(graph, variables, channels)
