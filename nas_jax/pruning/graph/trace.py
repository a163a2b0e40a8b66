"""Tracing a model for its layer graph: every top-level layer and normalisation call is
tagged (``checkpoint_name``: ``in:i``/``out:i`` around layer ``i``, ``nin:k``/``nout:k``
around normalisation ``k``) in one ``jax.make_jaxpr`` of the forward pass on abstract
variables, and described (kind, kernel, stride, groups, widths, parameters). A
``DenseGeneral``'s feature axes are tagged flattened (heads x head_dim); a multi-head
attention is recorded with the layer indices of its four projections."""
from __future__ import annotations

import inspect
import math
from typing import Callable, List, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from jax.ad_checkpoint import checkpoint_name

from nas_jax.models.nnx_model import NNXAttention
from nas_jax.rep.kinds import BLOCK_MODULES, kind_of_module
from nas_jax.rep.walk import intercept_modules, norm_kind

LAYER_TYPES = BLOCK_MODULES + (nn.Conv, nn.Dense, nn.DenseGeneral)  # a call of one of these is one layer
ATTENTION_TYPES = (nn.MultiHeadDotProductAttention, NNXAttention)
ATTENTION_ROLES = ("query", "key", "value", "out")  # the names of their projections


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(int(a) for a in v)


def describe(module: nn.Module, x, y) -> dict:
    """Kind, kernel, stride and groups of a layer module called on ``x`` giving ``y``."""
    if isinstance(module, (nn.Dense, nn.DenseGeneral)):
        return dict(kind="dense", kernel=(1, 1), stride=1, groups=1)
    if isinstance(module, nn.Conv):
        kernel, stride, groups = module.kernel_size, module.strides or 1, module.feature_group_count
    else:  # a nas_jax block (a RepNAS block is always a 3x3 layer)
        kernel = kind_of_module(module).fixed_kernel_size or module.kernel_size
        stride, groups = module.strides, module.groups
    kind = "depthwise" if groups > 1 and groups == x.shape[-1] == y.shape[-1] else "conv"
    return dict(kind=kind, kernel=_pair(kernel), stride=_pair(stride)[0], groups=groups)


def intercept_layers(wrap: Callable, norms: Optional[Callable] = None):
    """A context in which every top-level layer (``LAYER_TYPES``) call runs as
    ``wrap(module, call, x)`` and, if ``norms`` is given, every top-level normalisation
    (``norm_kind``) call as ``norms(module, call, x)`` (``nas_jax.rep.walk``)."""
    return intercept_modules([(LAYER_TYPES, wrap)] + ([(norm_kind, norms)] if norms is not None else []))


def feature_axes(module: nn.Module) -> Tuple[int, int]:
    """(input, output) feature axes of a layer: 1, 1 but for a ``DenseGeneral`` (trailing
    input axes only, no batch dims)."""
    if not isinstance(module, nn.DenseGeneral):
        return 1, 1
    axis = (module.axis,) if isinstance(module.axis, int) else tuple(module.axis)
    features = (module.features,) if isinstance(module.features, int) else tuple(module.features)
    if module.batch_dims or sorted(axis) != list(range(-len(axis), 0)):
        raise NotImplementedError(f"DenseGeneral {'/'.join(module.path)} with axis={module.axis} and batch_dims="
                                  f"{module.batch_dims}: only trailing feature axes can be pruned")
    return len(axis), len(features)


def flatten_features(x, axes: int):
    """``x`` with its last ``axes`` axes flattened into one."""
    return x.reshape(*x.shape[:x.ndim - axes], -1) if axes > 1 else x


def own_params(module: nn.Module, out_channels: int) -> Tuple[Optional[str], int]:
    """(path of the module's one kernel, number of [out_channels] parameter vectors; a
    ``DenseGeneral``'s bias [heads, head_dim] is one)."""
    flat = traverse_util.flatten_dict(module.variables.get("params", {}))
    kernels = [k for k, v in flat.items() if k[-1] == "kernel" and len(v.shape) >= 2]
    vectors = sum(1 for k, v in flat.items() if k not in kernels and math.prod(v.shape) == out_channels)
    path = "/".join(module.path + kernels[0]) if len(kernels) == 1 else None
    return path, vectors


def _attention_record(module: nn.Module, args, kwargs) -> dict:
    """What the graph keeps of an ``nn.MultiHeadDotProductAttention`` call."""
    path = "/".join(module.path)
    if module.decode or module.normalize_qk:
        raise NotImplementedError(f"attention {path}: decode and normalize_qk attentions cannot be pruned")
    bound = inspect.signature(type(module).__call__).bind(module, *args, **kwargs).arguments
    queries = bound["inputs_q"]
    keys = next((bound[k] for k in ("inputs_k", "inputs_kv") if bound.get(k) is not None), queries)
    # [B, ..., length, features]: the attention runs over the length axis, once per leading position
    return dict(path=path, at=tuple(module.path), heads=module.num_heads, queries=math.prod(queries.shape[1:-1]),
                keys=keys.shape[-2], roles={})


def trace_layers(model: nn.Module, input_shape: Sequence[int]):
    """(layer descriptions in call order, normalisation descriptions, attention records,
    BatchNorm paths, the abstract variables, the closed jaxpr of the tagged forward pass
    whose inputs are the variables' leaves then the images)."""
    layers: List[dict] = []
    norms: List[dict] = []
    attentions: List[dict] = []
    open_attentions: List[dict] = []
    batch_norms: List[str] = []

    def tag_layer(module, call, x):
        index = len(layers)
        n_in, n_out = feature_axes(module)
        flat_x = checkpoint_name(flatten_features(x, n_in), f"in:{index}")
        y = call(flat_x.reshape(x.shape))
        flat_y = flatten_features(y, n_out)
        kernel_path, vectors = own_params(module, flat_y.shape[-1])
        positions = flat_y.shape[1:3] if flat_y.ndim == 4 else (math.prod(flat_y.shape[1:-1]), 1)
        layers.append(dict(path="/".join(module.path), in_channels=flat_x.shape[-1], out_channels=flat_y.shape[-1],
                           out_hw=tuple(positions), kernel_path=kernel_path, vectors=vectors, out_axes=n_out,
                           **describe(module, flat_x, flat_y)))
        if open_attentions and tuple(module.path[:-1]) == open_attentions[-1]["at"] and module.path[-1] in ATTENTION_ROLES:
            open_attentions[-1]["roles"][module.path[-1]] = index
        return checkpoint_name(flat_y, f"out:{index}").reshape(y.shape)

    def tag_norm(module, call, x):
        index = len(norms)
        x = checkpoint_name(x, f"nin:{index}")
        y = call(x)
        kind = norm_kind(module)
        groups = module.num_groups or x.shape[-1] // module.group_size if kind == "group" else 1
        norms.append(dict(path="/".join(module.path), kind=kind, num_groups=groups,
                          vectors=own_params(module, x.shape[-1])[1]))
        return checkpoint_name(y, f"nout:{index}")

    def record(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        if norm_kind(module) == "batch":
            batch_norms.append("/".join(module.path))
        if not isinstance(module, ATTENTION_TYPES) or (open_attentions and open_attentions[-1]["at"] == module.path):
            return next_fun(*args, **kwargs)  # (the second: its resized copy under AtWidths)
        open_attentions.append(_attention_record(module, args, kwargs))
        try:
            return next_fun(*args, **kwargs)
        finally:
            attentions.append(open_attentions.pop())

    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    with nn.intercept_methods(record), intercept_layers(tag_layer, tag_norm):
        jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    return layers, norms, attentions, tuple(dict.fromkeys(batch_norms)), variables, jaxpr.jaxpr
