"""Exact FLOPs and parameter counts of a pruned network, from its layer graph.

FLOPs are multiply-accumulates (MACs) of the convs and dense layers, one per weight per
output position (``H_out * W_out * kH * kW * C_in / groups * C_out``, a depthwise conv
``H_out * W_out * kH * kW * C_out``, a dense layer ``C_in * C_out`` per position: per token
on a sequence), plus a multi-head attention's two products between activations (scores
and weighted sum, ``queries * keys * head_dim`` per head each); normalisations, softmax,
activations, pooling and additions are not counted. Parameters are the entries of the
exported network's ``params`` collection: kernels, each layer's per-output-channel vectors
(a bias; a conv-BN's scale and bias), each normalisation's per-channel vectors and the
parameters outside layers (a position embedding, a class token). Both
are exact for the spatial size the graph was built for.

Every function takes kept ``channels`` [..., num_groups] (one configuration or a batch of
them) and is vectorised over the leading axes: a layer's kept input width is linear in
the groups' widths (``input_widths``).
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from nas_jax.pruning.graph import IMAGE, LayerGraph


def _incidence(graph: LayerGraph, segments: Sequence[Tuple[Tuple[int, int], ...]], repeats: Sequence[int]):
    """([N, num_groups] how often each group's channels are read, [N] fixed channels read)
    by N readers of ``segments`` repeated ``repeats`` times."""
    counts = np.zeros((len(segments), len(graph.groups)), np.int64)
    fixed = np.zeros(len(segments), np.int64)
    for i, (segs, repeat) in enumerate(zip(segments, repeats)):
        for g, width in segs:
            if g == IMAGE:
                fixed[i] += repeat * width
            else:
                counts[i, g] += repeat
    return counts, fixed


def input_incidence(graph: LayerGraph) -> Tuple[np.ndarray, np.ndarray]:
    """([num_layers, num_groups], [num_layers]): a layer's kept input width is
    ``channels @ counts.T + fixed`` (jit-able with traced ``channels``)."""
    return _incidence(graph, [layer.inputs for layer in graph.layers], [layer.repeat for layer in graph.layers])


def input_widths(graph: LayerGraph, channels) -> np.ndarray:
    """[..., num_layers] int64: every layer's kept input width."""
    counts, fixed = input_incidence(graph)
    return np.asarray(channels, np.int64) @ counts.T + fixed


def layer_costs(graph: LayerGraph, channels) -> Dict[str, np.ndarray]:
    """``{'flops': [..., num_layers], 'params': [..., num_layers]}`` int64."""
    channels = np.asarray(channels, np.int64)
    c_in = input_widths(graph, channels)
    c_out = channels[..., [layer.group for layer in graph.layers]]
    taps = np.asarray([layer.kernel[0] * layer.kernel[1] for layer in graph.layers], np.int64)
    kinds = np.asarray([layer.kind for layer in graph.layers])
    groups = np.asarray([1 if layer.kind == "depthwise" else layer.groups for layer in graph.layers], np.int64)
    fan_in = np.where(kinds == "depthwise", 1, c_in // groups)
    weights = np.where(kinds == "dense", 1, taps) * fan_in * c_out
    positions = np.asarray([layer.out_hw[0] * layer.out_hw[1] for layer in graph.layers], np.int64)
    vectors = np.asarray([layer.vectors for layer in graph.layers], np.int64)
    return {"flops": positions * weights, "params": weights + vectors * c_out}


def norm_params(graph: LayerGraph, channels) -> np.ndarray:
    """[...] int64: the parameters of the top-level normalisations."""
    if not graph.norms:
        return np.zeros(np.shape(channels)[:-1], np.int64)
    counts, fixed = _incidence(graph, [n.inputs for n in graph.norms], [1] * len(graph.norms))
    widths = np.asarray(channels, np.int64) @ counts.T + fixed
    return widths @ np.asarray([n.vectors for n in graph.norms], np.int64)


def attention_flops(graph: LayerGraph, channels) -> np.ndarray:
    """[...] int64: the multi-head attentions' scores (queries x keys x head_dim per
    head) and weighted sums (the same), ``2 * queries * keys * kept channels`` each."""
    channels = np.asarray(channels, np.int64)
    total = np.zeros(channels.shape[:-1], np.int64)
    for a in graph.attentions:
        total = total + 2 * a.queries * a.keys * channels[..., graph.layers[a.query].group]
    return total


def free_params(graph: LayerGraph, channels) -> np.ndarray:
    """[...] int64: the parameters outside layers and normalisations (``FreeParam``)."""
    channels = np.asarray(channels, np.int64)
    total = np.zeros(channels.shape[:-1], np.int64)
    for p in graph.free_params:
        total = total + p.size * (p.channels if p.group == IMAGE else channels[..., p.group])
    return total


def total_costs(graph: LayerGraph, channels) -> Dict[str, np.ndarray]:
    """``{'flops': [...], 'params': [...]}`` int64 of the whole network."""
    per_layer = layer_costs(graph, channels)
    return {"flops": per_layer["flops"].sum(-1) + attention_flops(graph, channels),
            "params": per_layer["params"].sum(-1) + norm_params(graph, channels) + free_params(graph, channels)}


def network_cost(graph: LayerGraph, channels) -> Dict[str, int]:
    """``{'flops': MACs, 'params': count}`` of the network for ``channels`` [num_groups]."""
    return {k: int(v) for k, v in total_costs(graph, channels).items()}
