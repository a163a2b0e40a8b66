"""The pruned network as a masked full-width zoo model, and its BatchNorm statistics.

The PruningNet's generated weights become the variables of the plain zoo model
(``zoo_variables``): each conv-BN layer ``P`` gets ``P/conv/kernel`` from its generator and
an affine-free BatchNorm (``P/bn/scale`` = 1, ``P/bn/bias`` = 0, constants in the
generated weights' dtype, as MetaPruning's ``affine=False``); the classifier ``linear``
gets its generated kernel and the learnt bias.

``masked_apply`` runs that model with every layer's output multiplied by its group's
channel mask (``arange(C) < kept``), after its BatchNorm. BatchNorm normalises each
channel on its own, so masked channels never change kept ones; a kept channel's
statistics do depend on the configuration (its inputs do), which is why there is no
running average during training (train-mode BN uses the batch's statistics of the
configuration drawn) and why ``recalibrate`` computes statistics for one configuration
before it is evaluated (MetaPruning recalibrates on 100 batches). The masked model with
recalibrated statistics computes exactly what the cropped network of ``export`` does.
"""
from __future__ import annotations

from typing import Dict, Iterable, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from nas_jax.pruning.graph import LayerGraph, intercept_layers


def _nest(flat: Dict[Tuple[str, ...], jax.Array]) -> dict:
    """``{('a', 'b', 'c'): x}`` -> ``{'a': {'b': {'c': x}}}``."""
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def default_batch_stats(graph: LayerGraph) -> dict:
    """Zero means and unit variances for every conv-BN layer of ``graph``."""
    flat = {}
    for layer in graph.layers[:-1]:
        path = tuple(layer.path.split("/")) + ("bn",)
        flat[path + ("mean",)] = jnp.zeros((layer.out_channels,), jnp.float32)
        flat[path + ("var",)] = jnp.ones((layer.out_channels,), jnp.float32)
    return _nest(flat)


def zoo_variables(graph: LayerGraph, weights: Dict[str, jax.Array], classifier_bias, batch_stats=None) -> dict:
    """``{'params', 'batch_stats'}`` of the plain full-width zoo model from generated
    ``weights`` (``{layer path: full weight}``); ``batch_stats`` defaults to
    ``default_batch_stats``."""
    flat = {}
    for layer in graph.layers[:-1]:
        path = tuple(layer.path.split("/"))
        flat[path + ("conv", "kernel")] = weights[layer.path]
        flat[path + ("bn", "scale")] = jnp.ones((layer.out_channels,), weights[layer.path].dtype)
        flat[path + ("bn", "bias")] = jnp.zeros((layer.out_channels,), weights[layer.path].dtype)
    classifier = graph.layers[-1]
    flat[tuple(classifier.path.split("/")) + ("kernel",)] = weights[classifier.path]
    flat[tuple(classifier.path.split("/")) + ("bias",)] = classifier_bias
    return {"params": _nest(flat), "batch_stats": default_batch_stats(graph) if batch_stats is None else batch_stats}


def channel_masks(graph: LayerGraph, channels) -> Dict[str, jax.Array]:
    """``{layer path: [C_out] float32 mask}`` of every layer whose width is pruned."""
    channels = jnp.asarray(channels)
    return {layer.path: (jnp.arange(layer.out_channels) < channels[layer.group]).astype(jnp.float32)
            for layer in graph.layers if not graph.groups[layer.group].fixed}


def masked_apply(model: nn.Module, graph: LayerGraph, variables, channels, images, train: bool):
    """Logits [B, classes] of ``model`` (plain zoo model of ``graph``) pruned to ``channels``
    [num_groups] by masks. ``train``: BatchNorm on the batch's statistics."""
    masks = channel_masks(graph, channels)

    def mask_output(module, call, x):
        y = call(x)
        mask = masks.get("/".join(module.path))
        return y if mask is None else y * mask.astype(y.dtype)

    with intercept_layers(mask_output):
        if train:
            return model.apply(variables, images, train=True, mutable=["batch_stats"])[0]
        return model.apply(variables, images, train=False)


def batch_statistics(model: nn.Module, graph: LayerGraph, variables, channels, images) -> dict:
    """A ``batch_stats`` tree with the mean and (biased) variance over ``images`` of the
    input of every BatchNorm of the masked model, in the train-mode forward pass (float32,
    or float64 when the network computes in float64)."""
    flat = {}

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
            x = args[0].astype(jnp.promote_types(args[0].dtype, jnp.float32))
            flat[context.module.path + ("mean",)] = x.mean(axis=(0, 1, 2))
            flat[context.module.path + ("var",)] = x.var(axis=(0, 1, 2))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        masked_apply(model, graph, variables, channels, images, train=True)
    return _nest(flat)


_batch_statistics_jit = jax.jit(batch_statistics, static_argnums=(0, 1))


def recalibrate(model: nn.Module, graph: LayerGraph, variables, channels, batches: Iterable) -> dict:
    """BatchNorm statistics for one configuration: the average over ``batches`` (arrays of
    images [B, H, W, 3]) of each batch's statistics, as PyTorch's cumulative average."""
    total, count = None, 0
    for images in batches:
        stats = _batch_statistics_jit(model, graph, variables, channels, images)
        total = stats if total is None else jax.tree.map(jnp.add, total, stats)
        count += 1
    if total is None:
        raise ValueError("recalibrate needs at least one batch")
    return jax.tree.map(lambda s: s / count, total)
