"""A width configuration as a real, smaller network.

``crop_variables`` gathers, from every array of the masked full-width variables, the
kept entries along its channel axes: a layer's kernel on its input axis (the kept
positions of ``Layer.inputs``; within one feature group for a grouped conv; none for a
depthwise kernel) and output axis, a layer's vectors (bias, its BatchNorm's) on the
output axis, a normalisation's vectors on its input axis. ``export_network`` pairs them
with the same model rebuilt at the kept widths: a zoo model through its per-layer
``widths`` overrides, a user's linen model through ``nas_jax.models.AtWidths``, a user's
NNX model as its own class resized (``nas_jax.models.nnx_model.resize``). A DenseGeneral's
kernel [in axes..., out axes...] is cropped as [in, out] and keeps its head size; a
parameter outside layers whose last axis is a group's channels (a position embedding) is
cropped on it. With the
same BatchNorm statistics it computes what ``masked_apply`` computes for that
configuration.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from nas_jax.models.at_widths import Overrides
from nas_jax.models.custom import CustomSpec
from nas_jax.models.network import ZooSpec
from nas_jax.pruning.graph import IMAGE, Layer, LayerGraph, Segments, kept_channels


def _kept_out(graph: LayerGraph, layer: Layer, channels) -> np.ndarray:
    group = graph.groups[layer.group]
    return kept_channels(group.channels, group.blocks, int(channels[layer.group]))


def kept_inputs(graph: LayerGraph, inputs: Segments, repeat: int, channels) -> np.ndarray:
    """The kept positions of an input axis laid out as ``inputs`` repeated ``repeat`` times."""
    parts, offset = [], 0
    for g, width in inputs:
        kept = np.arange(width) if g == IMAGE else kept_channels(width, graph.groups[g].blocks, int(channels[g]))
        parts.append(offset + kept)
        offset += width
    pattern = np.concatenate(parts)
    return (np.arange(repeat)[:, None] * offset + pattern[None]).reshape(-1)


def _kernel_inputs(graph: LayerGraph, layer: Layer, channels) -> Optional[np.ndarray]:
    """The kept indices of a conv kernel's input axis (None: all, for a depthwise kernel)."""
    if layer.kind == "depthwise":
        return None
    if layer.groups > 1:  # within one feature group; every group keeps the same positions
        (g, width), = layer.inputs
        if g == IMAGE:
            return np.arange(width // layer.groups)
        blocks = graph.groups[g].blocks
        return kept_channels(width // layer.groups, blocks // layer.groups, int(channels[g]) // layer.groups)
    return kept_inputs(graph, layer.inputs, layer.repeat, channels)


def _resized(shape: Tuple[int, ...], width: int) -> Tuple[int, ...]:
    """``shape`` (axes flattening to one channel axis, e.g. heads x head_dim) holding
    ``width`` channels: its first axis shrinks."""
    return (width // math.prod(shape[1:]),) + tuple(shape[1:])


def _crop_layer(graph: LayerGraph, layer: Layer, array: np.ndarray, channels) -> np.ndarray:
    out = _kept_out(graph, layer, channels)
    if layer.kind == "dense" and array.ndim >= 2 and array.size == layer.in_channels * layer.out_channels:
        inputs = kept_inputs(graph, layer.inputs, layer.repeat, channels)
        split = array.ndim - layer.out_axes
        kept = array.reshape(layer.in_channels, layer.out_channels)[inputs][:, out]
        return kept.reshape(_resized(array.shape[:split], len(inputs)) + _resized(array.shape[split:], len(out)))
    if array.ndim == 4:  # conv kernel HWIO
        inputs = _kernel_inputs(graph, layer, channels)
        return (array if inputs is None else array[:, :, inputs])[..., out]
    return array.reshape(-1)[out].reshape(_resized(array.shape, len(out)))  # a vector: bias, BatchNorm


def crop_variables(graph: LayerGraph, variables, channels) -> dict:
    """Every collection of ``variables`` (full width, laid out as the model's) cropped to
    ``channels`` [num_groups]."""
    channels = np.asarray(channels)
    owners = {tuple(layer.path.split("/")): ("layer", layer) for layer in graph.layers}
    owners.update({tuple(n.path.split("/")): ("norm", n) for n in graph.norms})
    owners.update({tuple(p.path.split("/")): ("free", p) for p in graph.free_params})
    cropped = {}
    for key, array in traverse_util.flatten_dict(jax.device_get(variables)).items():
        owner = max((p for p in owners if key[1:1 + len(p)] == p), key=len, default=None)
        if owner is None:
            raise ValueError(f"variable {'/'.join(key)} belongs to no layer, normalisation or channel-carrying "
                             "parameter of the graph")
        kind, node = owners[owner]
        array = np.asarray(array)
        if kind == "layer":
            cropped[key] = _crop_layer(graph, node, array, channels)
        elif kind == "norm":
            cropped[key] = array[..., kept_inputs(graph, node.inputs, 1, channels)]
        else:
            cropped[key] = array if node.group == IMAGE else array[..., kept_inputs(graph, ((node.group, array.shape[-1]),), 1, channels)]
    return traverse_util.unflatten_dict(cropped)


def width_overrides(graph: LayerGraph, channels) -> Tuple[Tuple[str, int], ...]:
    """``((layer path, out channels), ...)`` for every prunable non-depthwise layer (a zoo
    model's ``widths``)."""
    return tuple((layer.path, int(channels[layer.group])) for layer in graph.layers
                 if layer.kind == "conv" and not graph.groups[layer.group].fixed)


def attribute_overrides(graph: LayerGraph, channels) -> Overrides:
    """``AtWidths`` overrides: every pruned layer's conv / dense module gets its kept
    ``features`` (and a depthwise conv its ``feature_group_count``); an attention its kept
    ``num_heads`` and ``qkv_features`` (head size kept) and ``out_features``."""
    out = []
    inside = {i for a in graph.attentions for i in (a.query, a.key, a.value, a.out)}
    for a in graph.attentions:
        kept = int(channels[graph.layers[a.query].group])
        width = int(channels[graph.layers[a.out].group])
        out.append((a.path, (("num_heads", kept // a.head_dim), ("out_features", width), ("qkv_features", kept))))
    for i, layer in enumerate(graph.layers):
        kept = int(channels[layer.group])
        if kept == layer.out_channels or i in inside:
            continue
        if layer.kernel_path is None:
            raise NotImplementedError(f"layer {layer.path} has several kernels (a multi-branch block): "
                                      "export its plain or fused form")
        changes = (("features", kept),) + ((("feature_group_count", kept),) if layer.kind == "depthwise" else ())
        out.append((layer.kernel_path.rsplit("/", 1)[0], changes))
    return tuple(out)


def export_network(spec: Union[ZooSpec, CustomSpec], graph: LayerGraph, variables, channels) -> Tuple[nn.Module, dict]:
    """(``spec``'s model at ``channels``, its cropped variables): a zoo model with
    ``widths`` overrides, a user model under ``AtWidths``."""
    channels = np.asarray(channels)
    cropped = crop_variables(graph, variables, channels)
    if isinstance(spec, ZooSpec):
        model = spec.model("plain", width_overrides(graph, channels))
    elif spec.is_nnx:  # the user's NNX class, resized to the cropped variables
        model = spec.model("plain", shapes=variable_shapes(cropped))
    else:
        model = spec.model("plain", attribute_overrides(graph, channels))
    expected = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                              jax.ShapeDtypeStruct(graph.input_shape, np.float32))
    wrong = [("/".join(k), np.shape(v), tuple(expected_flat[k].shape))
             for expected_flat in [traverse_util.flatten_dict(expected)]
             for k, v in traverse_util.flatten_dict(cropped).items() if np.shape(v) != tuple(expected_flat[k].shape)]
    if wrong:
        raise NotImplementedError(f"the pruned {spec.name} does not take its cropped variables: {wrong[:3]} (cropped "
                                  "shape, the model's); a parameter the channel pass could not follow?")
    return model, cropped


def variable_shapes(variables) -> Tuple[Tuple[str, Tuple[int, ...]], ...]:
    """``((path without the collection, shape), ...)`` of ``variables`` (an ``NNXModel``'s
    ``shapes``)."""
    return tuple(("/".join(key[1:]), tuple(int(d) for d in np.shape(v)))
                 for key, v in sorted(traverse_util.flatten_dict(variables).items()))
