"""Tracing a model for its layer graph: every top-level layer and normalisation call is
tagged (``checkpoint_name``: ``in:i``/``out:i`` around layer ``i``, ``nin:k``/``nout:k``
around normalisation ``k``) in one ``jax.make_jaxpr`` of the forward pass on abstract
variables, and described (kind, kernel, stride, groups, widths, parameters)."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from jax.ad_checkpoint import checkpoint_name

from nas_jax.rep.kinds import BLOCK_MODULES, kind_of_module
from nas_jax.rep.walk import intercept_modules, norm_kind

LAYER_TYPES = BLOCK_MODULES + (nn.Conv, nn.Dense)  # a call of one of these is one layer


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(int(a) for a in v)


def describe(module: nn.Module, x, y) -> dict:
    """Kind, kernel, stride and groups of a layer module called on ``x`` giving ``y``."""
    if isinstance(module, nn.Dense):
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


def own_params(module: nn.Module, out_channels: int) -> Tuple[Optional[str], int]:
    """(path of the module's one kernel, number of [out_channels] parameter vectors)."""
    flat = traverse_util.flatten_dict(module.variables.get("params", {}))
    kernels = [k for k, v in flat.items() if k[-1] == "kernel" and len(v.shape) >= 2]
    vectors = sum(1 for v in flat.values() if tuple(v.shape) == (out_channels,))
    path = "/".join(module.path + kernels[0]) if len(kernels) == 1 else None
    return path, vectors


def trace_layers(model: nn.Module, input_shape: Sequence[int]):
    """(layer descriptions in call order, normalisation descriptions, BatchNorm paths, the
    closed jaxpr of the tagged forward pass)."""
    layers: List[dict] = []
    norms: List[dict] = []
    batch_norms: List[str] = []

    def tag_layer(module, call, x):
        index = len(layers)
        x = checkpoint_name(x, f"in:{index}")
        y = call(x)
        kernel_path, vectors = own_params(module, y.shape[-1])
        layers.append(dict(path="/".join(module.path), in_channels=x.shape[-1], out_channels=y.shape[-1],
                           out_hw=tuple(y.shape[1:3]) if y.ndim == 4 else (1, 1), kernel_path=kernel_path,
                           vectors=vectors, **describe(module, x, y)))
        return checkpoint_name(y, f"out:{index}")

    def tag_norm(module, call, x):
        index = len(norms)
        x = checkpoint_name(x, f"nin:{index}")
        y = call(x)
        kind = norm_kind(module)
        groups = module.num_groups or x.shape[-1] // module.group_size if kind == "group" else 1
        norms.append(dict(path="/".join(module.path), kind=kind, num_groups=groups,
                          vectors=own_params(module, x.shape[-1])[1]))
        return checkpoint_name(y, f"nout:{index}")

    def record_batch_norms(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and norm_kind(context.module) == "batch":
            batch_norms.append("/".join(context.module.path))
        return next_fun(*args, **kwargs)

    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    with nn.intercept_methods(record_batch_norms), intercept_layers(tag_layer, tag_norm):
        jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    return layers, norms, tuple(dict.fromkeys(batch_norms)), jaxpr.jaxpr
