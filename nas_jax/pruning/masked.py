"""The pruned network as a masked full-width model, and its BatchNorm statistics.

``network_variables`` turns the PruningNet's generated kernels into the variables of the
model pruned (a zoo model or a user's): each layer's kernel (``Layer.kernel_path``) comes
from its generator, every BatchNorm is affine-free (scale 1, bias 0, constants in the
generated weights' dtype, as MetaPruning's ``affine=False``) and the other parameters
(biases, LayerNorm / GroupNorm scales) are ordinary learnt parameters of the run.

``masked_apply`` runs that model with every layer's *input* multiplied by the channel
masks of the groups it reads (``graph.channel_mask``, concatenated and tiled as
``Layer.inputs`` says), and every LayerNorm / GroupNorm computing its statistics over
the kept channels only. Everything else between layers is channelwise (BatchNorm,
activations, additions, pooling, concatenation, flattening), so a dropped channel never
changes a kept one and the layers see exactly the cropped network's inputs. A kept
channel's BatchNorm statistics do depend on the configuration (its inputs do), which is
why there is no running average during training (train-mode BN uses the batch's
statistics of the configuration drawn) and why ``recalibrate`` computes statistics for
one configuration before it is evaluated (MetaPruning recalibrates on 100 batches). The
masked model with recalibrated statistics computes exactly what ``export`` crops.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from nas_jax.pruning.graph import IMAGE, LayerGraph, Segments, channel_mask, intercept_layers, norm_kind
from nas_jax.pruning.graph.trace import feature_axes


def template(model: nn.Module, graph: LayerGraph) -> dict:
    """The abstract (shape-only) variables of ``model`` at the graph's input shape."""
    x = jax.ShapeDtypeStruct(graph.input_shape, jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def _is_batch_norm(graph: LayerGraph, key) -> bool:
    return "/".join(key[:-1]) in graph.batch_norms


def learnt_paths(graph: LayerGraph, params) -> tuple:
    """The ``/``-joined paths of the parameters trained directly (not generated, not an
    affine-free BatchNorm's)."""
    kernels = {layer.kernel_path for layer in graph.layers}
    return tuple("/".join(k) for k in traverse_util.flatten_dict(params)
                 if "/".join(k) not in kernels and not _is_batch_norm(graph, k))


def network_variables(graph: LayerGraph, variables_template, weights: Dict[str, jax.Array], learnt: Dict[str, jax.Array],
                      batch_stats=None) -> dict:
    """``{'params', 'batch_stats'}`` of the full-width model from generated ``weights``
    (``{layer path: full kernel}``) and ``learnt`` (``{param path: value}``);
    ``batch_stats`` defaults to zero means and unit variances."""
    kernel_of = {layer.kernel_path: layer.path for layer in graph.layers}
    dtype = next(iter(weights.values())).dtype
    params = {}
    for key, leaf in traverse_util.flatten_dict(variables_template["params"]).items():
        path = "/".join(key)
        if path in kernel_of:  # [in, out] for a DenseGeneral's kernel [in axes..., out axes...]
            params[key] = weights[kernel_of[path]].reshape(leaf.shape)
        elif _is_batch_norm(graph, key):
            params[key] = (jnp.ones if key[-1] == "scale" else jnp.zeros)(leaf.shape, dtype)
        else:
            params[key] = learnt[path]
    if batch_stats is None:
        batch_stats = traverse_util.unflatten_dict({
            k: (jnp.ones if k[-1] == "var" else jnp.zeros)(v.shape, jnp.float32)
            for k, v in traverse_util.flatten_dict(variables_template.get("batch_stats", {})).items()})
    return {"params": traverse_util.unflatten_dict(params), "batch_stats": batch_stats}


def input_mask(graph: LayerGraph, inputs: Segments, repeat: int, channels) -> jax.Array:
    """[repeat * width] bool: which entries of an input laid out as ``inputs`` are kept."""
    parts = [jnp.ones((width,), bool) if g == IMAGE else channel_mask(width, graph.groups[g].blocks, channels[g])
             for g, width in inputs]
    return jnp.tile(jnp.concatenate(parts), repeat)


def masked_norm(module: nn.Module, x: jax.Array, mask: jax.Array) -> jax.Array:
    """A ``nn.LayerNorm`` (over the channel axis) or ``nn.GroupNorm`` on ``x`` with its
    statistics over the channels where ``mask`` [C] is true only."""
    if isinstance(module, nn.LayerNorm):
        if module.reduction_axes not in (-1, (-1,)) or module.feature_axes not in (-1, (-1,)):
            raise NotImplementedError(f"LayerNorm {'/'.join(module.path)}: only normalisation over the channel "
                                      "axis can be pruned")
        groups, axes = 1, (-1,)
    else:
        groups = module.num_groups or x.shape[-1] // module.group_size
        axes = tuple(range(1, x.ndim - 1)) + (-1,)
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    xs = x.astype(dtype).reshape(*x.shape[:-1], groups, x.shape[-1] // groups)
    w = mask.reshape(groups, -1).astype(dtype)
    count = jnp.sum(jnp.broadcast_to(w, xs.shape), axis=axes, keepdims=True)
    mean = jnp.sum(xs * w, axis=axes, keepdims=True) / count
    var = jnp.sum(jnp.square(xs - mean) * w, axis=axes, keepdims=True) / count
    y = ((xs - mean) * jax.lax.rsqrt(var + module.epsilon)).reshape(x.shape)
    if module.use_scale:
        y = y * module.get_variable("params", "scale")
    if module.use_bias:
        y = y + module.get_variable("params", "bias")
    return y.astype(module.dtype or dtype)


def masked_apply(model: nn.Module, graph: LayerGraph, variables, channels, images, train: bool, rng=None):
    """Outputs of ``model`` (the model of ``graph``) pruned to ``channels`` [num_groups] by
    masks. ``train``: BatchNorm on the batch's statistics; ``rng``: the ``dropout`` key."""
    channels = jnp.asarray(channels)
    layer_masks = {layer.path: input_mask(graph, layer.inputs, layer.repeat, channels) for layer in graph.layers
                   if any(g != IMAGE for g, _ in layer.inputs)}
    norm_masks = {n.path: input_mask(graph, n.inputs, 1, channels) for n in graph.norms
                  if n.kind != "batch" and any(g != IMAGE for g, _ in n.inputs)}

    def mask_input(module, call, x):
        mask = layer_masks.get("/".join(module.path))
        if mask is None:
            return call(x)
        n_in = feature_axes(module)[0]  # a DenseGeneral reading heads x head_dim
        return call(x * mask.reshape(x.shape[x.ndim - n_in:]).astype(x.dtype))

    def mask_norm(module, call, x):
        mask = norm_masks.get("/".join(module.path))
        return call(x) if mask is None else masked_norm(module, x, mask)

    with intercept_layers(mask_input, mask_norm):
        if train:
            rngs = {} if rng is None else {"dropout": rng}
            return model.apply(variables, images, train=True, mutable=["batch_stats"], rngs=rngs)[0]
        return model.apply(variables, images, train=False)


def accuracy_sums(model: nn.Module, graph: LayerGraph, variables, channels, batch):
    """``(correct, count)`` of the masked model in eval mode over ``batch`` (``'image'``,
    ``'label'``, ``'mask'`` [B], 0 on padding): the numerator and denominator of top-1."""
    logits = masked_apply(model, graph, variables, channels, batch["image"], train=False)
    mask = batch["mask"]
    return ((jnp.argmax(logits, -1) == batch["label"]) * mask).sum(), mask.sum()


def batch_statistics(model: nn.Module, graph: LayerGraph, variables, channels, images) -> dict:
    """A ``batch_stats`` tree with the mean and (biased) variance over ``images`` of the
    input of every BatchNorm of the masked model, in the train-mode forward pass (float32,
    or float64 when the network computes in float64)."""
    flat = {}

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and norm_kind(context.module) == "batch":
            x = args[0].astype(jnp.promote_types(args[0].dtype, jnp.float32))
            axes = tuple(range(x.ndim - 1))
            flat[context.module.path + ("mean",)] = x.mean(axis=axes)
            flat[context.module.path + ("var",)] = x.var(axis=axes)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        masked_apply(model, graph, variables, channels, images, train=True)
    return traverse_util.unflatten_dict(flat)


def recalibrate(statistics: Callable, variables, channels, batches: Iterable) -> dict:
    """BatchNorm statistics for one configuration: the average over ``batches`` (arrays of
    images [B, H, W, C]) of each batch's statistics, as PyTorch's cumulative average.
    ``statistics(variables, channels, images)``: ``batch_statistics`` of the model and
    graph, compiled once by its owner (``PruningTask.statistics``)."""
    total, count = None, 0
    for images in batches:
        stats = statistics(variables, channels, images)
        total = stats if total is None else jax.tree.map(jnp.add, total, stats)
        count += 1
    if total is None:
        raise ValueError("recalibrate needs at least one batch")
    return jax.tree.map(lambda s: s / count, total)
