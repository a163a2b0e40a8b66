"""Conv-BatchNorm folding for any linen model, the deploy form of a model without
``nas_jax`` blocks (``fuse_params`` uses it for such models).

A BatchNorm (flax's or another package's: ``walk.norm_kind``) over the channel axis whose
input is the output of an ``nn.Conv`` that nothing else reads is folded into that conv:
with ``s = scale / sqrt(var + epsilon)`` [C_out], the kernel (HWIO) becomes ``kernel * s``
and the BatchNorm ``x + shift`` with ``shift = (conv_bias - mean) * s + bias`` (the conv's
own bias, if any, set to zero). The pairs are found on the jaxpr of the eval-mode forward
pass, and every module is located in the variables by the identity of its arrays, so
wrappers (``AtWidths``, a user's adapter) do not matter. ``FoldedBatchNorms`` runs the
model with the folded BatchNorms as additions; its variables keep the model's tree, less
the folded BatchNorms' ``scale`` and statistics.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from jax.ad_checkpoint import checkpoint_name
from jax.extend import core as jex_core

from nas_jax.rep.walk import intercept_modules, norm_kind

Path = Tuple[str, ...]


def _locate(tree) -> Dict[int, Path]:
    """``{id(array): path}`` of every leaf of a variables tree (paths start with the collection)."""
    return {id(leaf): path for path, leaf in traverse_util.flatten_dict(tree).items()}


def conv_batch_norm_pairs(model: nn.Module, variables, input_shape: Sequence[int]) -> Dict[Path, Tuple[Path, float]]:
    """``{BatchNorm params path: (conv params path, epsilon)}`` for every foldable pair of
    ``model`` (paths in ``variables['params']``), traced abstractly on NHWC ``input_shape``."""
    convs, norms = [], []

    def body(v, x):
        where = _locate(v)

        def tag_conv(module, call, y):
            out = call(y)
            convs.append(where.get(id(module.variables.get("params", {}).get("kernel")), ("?",))[1:-1])
            return checkpoint_name(out, f"conv:{len(convs) - 1}")

        def tag_norm(module, call, y):
            mean = module.get_variable("batch_stats", "mean")
            axis = getattr(module, "axis", -1)
            channel_axis = axis in (-1, (-1,), y.ndim - 1, (y.ndim - 1,))
            norms.append((where.get(id(mean), ("?",))[1:-1], float(getattr(module, "epsilon", "nan")), channel_axis))
            return call(checkpoint_name(y, f"norm:{len(norms) - 1}"))

        with intercept_modules([((nn.Conv,), tag_conv), (lambda m: norm_kind(m) == "batch", tag_norm)]):
            return model.apply(v, x, train=False)

    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    jaxpr = jax.make_jaxpr(body)(variables, x).jaxpr
    uses: Dict[object, list] = {}
    for eqn in jaxpr.eqns:
        for var in eqn.invars:
            if not isinstance(var, jex_core.Literal):
                uses.setdefault(var, []).append(eqn)
    for var in jaxpr.outvars:
        uses.setdefault(var, []).append(None)
    pairs = {}
    for eqn in jaxpr.eqns:
        name = eqn.params.get("name", "") if eqn.primitive.name == "name" else ""
        if not name.startswith("conv:"):
            continue
        readers = uses.get(eqn.outvars[0], [])
        tag = readers[0].params.get("name", "") if len(readers) == 1 and readers[0] is not None else ""
        if not tag.startswith("norm:"):
            continue
        conv, (norm, epsilon, channel_axis) = convs[int(name[5:])], norms[int(tag[5:])]
        if channel_axis and "?" not in conv + norm:
            pairs[norm] = (conv, epsilon)
    called = convs + [n for n, _, _ in norms]  # a module called twice is left alone
    return {n: (c, e) for n, (c, e) in pairs.items() if called.count(n) == 1 and called.count(c) == 1}


def _foldable_pairs(model: nn.Module, variables, input_shape: Sequence[int]) -> Dict[Path, Tuple[Path, float]]:
    pairs = conv_batch_norm_pairs(model, variables, input_shape)
    if not pairs:
        raise ValueError(f"{type(model).__name__}: no nn.Conv whose output only a BatchNorm reads, and no "
                         "nas_jax blocks (a `block` attribute): there is nothing to fuse")
    return pairs


def folded_model(model: nn.Module, variables, *, input_shape: Sequence[int] = (1, 64, 64, 3)) -> "FoldedBatchNorms":
    """The module ``fold_batch_norms`` returns, from the shapes of ``variables`` alone
    (``jax.eval_shape`` structures work), e.g. to apply what a jitted fold computed."""
    return FoldedBatchNorms(model, tuple(sorted("/".join(n) for n in _foldable_pairs(model, variables, input_shape))))


def fold_batch_norms(model: nn.Module, variables, *, input_shape: Sequence[int] = (1, 64, 64, 3)):
    """``(FoldedBatchNorms(model, folded), folded variables)``: every foldable conv-BatchNorm
    pair of ``model`` folded (see the module doc). Pure; works under ``jax.jit``. Raises
    ``ValueError`` when the model has no such pair."""
    pairs = _foldable_pairs(model, variables, input_shape)
    params = traverse_util.flatten_dict(variables["params"])
    stats = traverse_util.flatten_dict(variables.get("batch_stats", {}))
    for norm, (conv, epsilon) in pairs.items():
        kernel = params[conv + ("kernel",)]
        s = params.pop(norm + ("scale",), 1.0) * jax.lax.rsqrt(stats.pop(norm + ("var",)) + epsilon)
        conv_bias = params.get(conv + ("bias",), 0.0)
        params[norm + ("bias",)] = ((conv_bias - stats.pop(norm + ("mean",))) * s
                                    + params.get(norm + ("bias",), 0.0)).astype(kernel.dtype)
        params[conv + ("kernel",)] = (kernel * s).astype(kernel.dtype)
        if conv + ("bias",) in params:
            params[conv + ("bias",)] = jnp.zeros_like(params[conv + ("bias",)])
    folded = {"params": traverse_util.unflatten_dict(params)}
    if stats:
        folded["batch_stats"] = traverse_util.unflatten_dict(stats)
    return FoldedBatchNorms(model, tuple(sorted("/".join(n) for n in pairs))), folded


class FoldedBatchNorms(nn.Module):
    """``unfolded`` (the model) with the BatchNorms at ``folded`` (``/``-joined params
    paths) run as ``x + shift``, ``shift`` their ``params`` ``bias`` (``fold_batch_norms``).
    The field is not called ``model``: the model may be an ``AtWidths``, whose field is,
    and the two share one scope."""
    unfolded: nn.Module
    folded: Tuple[str, ...] = ()

    def setup(self):
        nn.share_scope(self, self.unfolded)

    def __call__(self, *args, **kwargs):
        where = _locate(self.variables.get("params", {}))
        folded = set(self.folded)

        def shift(next_fun, call_args, call_kwargs, context):
            module = context.module
            if context.method_name == "__call__" and module.has_variable("params", "bias"):
                path = where.get(id(module.get_variable("params", "bias")))
                if path is not None and "/".join(path[:-1]) in folded:
                    x = call_args[0]
                    return (x + module.get_variable("params", "bias")).astype(x.dtype)
            return next_fun(*call_args, **call_kwargs)

        with nn.intercept_methods(shift):
            return self.unfolded(*args, **kwargs)
