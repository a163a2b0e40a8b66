"""Exact FLOPs and parameter counts of a pruned network, from its layer graph.

FLOPs are multiply-accumulates (MACs) of the convs and the classifier, one per weight per
output position (``H_out * W_out * kH * kW * C_in / groups * C_out``; the classifier
``C_in * classes``); BatchNorm, activations, pooling and residual additions are not
counted. Parameters are the entries of the exported plain network's ``params``
collection: conv kernels, BatchNorm scale and bias (``2 * C_out``), the classifier's
kernel and bias. Both are exact for the spatial size the graph was built for.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from nas_jax.pruning.graph import IMAGE, LayerGraph


def layer_widths(graph: LayerGraph, channels) -> np.ndarray:
    """[num_layers, 2] int64 (input width, output width) of every layer for the kept
    ``channels`` [num_groups] of each group."""
    channels = np.asarray(channels, np.int64)
    return np.asarray([(layer.in_channels if graph.in_group(layer) == IMAGE else channels[graph.in_group(layer)],
                        channels[layer.group]) for layer in graph.layers], np.int64)


def layer_costs(graph: LayerGraph, channels) -> Dict[str, np.ndarray]:
    """``{'flops': [num_layers], 'params': [num_layers]}`` int64 for ``channels`` [num_groups]."""
    flops, params = [], []
    for layer, (c_in, c_out) in zip(graph.layers, layer_widths(graph, channels)):
        kh, kw = layer.kernel
        if layer.kind == "dense":
            weights, extra = c_in * c_out, c_out
        else:
            weights = kh * kw * (1 if layer.kind == "depthwise" else c_in) * c_out
            extra = 2 * c_out
        flops.append(layer.out_hw[0] * layer.out_hw[1] * weights)
        params.append(weights + extra)
    return {"flops": np.asarray(flops, np.int64), "params": np.asarray(params, np.int64)}


def network_cost(graph: LayerGraph, channels) -> Dict[str, int]:
    """``{'flops': MACs, 'params': count}`` of the whole network for ``channels``."""
    return {k: int(v.sum()) for k, v in layer_costs(graph, channels).items()}
