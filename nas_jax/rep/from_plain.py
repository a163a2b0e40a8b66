"""Start re-parameterized training from a trained plain network.

``branches_from_plain(model, plain_variables)`` gives a DBB, RepNAS or online zoo model variables
that compute exactly what the plain conv-BN network computes: each multi-branch block's
KxK conv-BN branch (``dbb_origin``, RepNAS ``_ops_2``) carries the plain layer's conv and
BatchNorm, and every other branch's output BatchNorm starts with scale 0 and bias 0, so it
adds zero (in train and eval mode) while its gradient, through that scale, is not zero.
An online block's KxK branch is named like the plain conv (``conv``, scale one), and its
other branches' scale vectors (the online RepNAS identity's too) start at zero.
Layers that stay conv-BN and the classifier are copied. Pure: returns new variables.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
from flax import traverse_util

from nas_jax.common import RUN_ONCE_COMPILER_OPTIONS

CARRIERS = ("dbb_origin", "_ops_2")  # the branch that carries the plain conv-BN, DBB / RepNAS
OUTPUT_NORMS = {  # branch -> its output BatchNorm, whose scale and bias start at zero
    "dbb_1x1": ("bn",), "dbb_avg": ("avgbn",), "dbb_1x1_kxk": ("bn2",),
    "_ops_0": ("bn",), "_ops_1": ("bn2",), "_ops_3": ("conv2", "bn"), "_ops_4": ("bn",), "_ops_5": ("bn",),
    "skip_connect": ("bn",),
    "orepa_1x1": (), "orepa_avg": (), "orepa_1x1_kxk": (),  # online DBB: the branch's scale vector
    "conv1x1": (), "avgpool": (), "conv1x1_3x3": (), "conv1x3": (), "conv3x1": (), "identity": (),  # online RepNAS
}


def branches_from_plain(model, plain_variables: Mapping, rng=None, input_shape=(1, 224, 224, 3)) -> dict:
    """``{'params', 'batch_stats'}`` of ``model`` (a ``block='dbb'``, ``'orepa'``, ``'repnas'`` or ``'repnas_online'`` zoo
    model) equal in function to ``plain_variables`` of the same model at ``block='plain'``."""
    rng = jax.random.key(0) if rng is None else rng
    initial = jax.jit(lambda r, x: model.init(r, x, train=False), compiler_options=RUN_ONCE_COMPILER_OPTIONS)(
        rng, jnp.zeros(input_shape, jnp.float32))
    flat = {(c,) + p: v for c in ("params", "batch_stats") for p, v in traverse_util.flatten_dict(initial[c]).items()}
    plain = {(c,) + p: v for c in ("params", "batch_stats")
             for p, v in traverse_util.flatten_dict(plain_variables.get(c, {})).items()}
    out = dict(flat)
    for path, value in plain.items():
        target = path if path in flat else _carrier_path(path, flat)
        if target is None:
            raise ValueError(f"plain variable {'/'.join(path)} has no place in the {model.block} model; "
                             "are both the same zoo model at the same widths?")
        if flat[target].shape != value.shape:
            raise ValueError(f"plain variable {'/'.join(path)} has shape {value.shape}, the {model.block} "
                             f"model's {'/'.join(target)} needs {flat[target].shape}")
        out[target] = jnp.asarray(value, flat[target].dtype)
    for path in flat:
        if path[0] == "params" and path[-1] in ("scale", "bias") and _is_output_norm(path):
            out[path] = jnp.zeros_like(flat[path])
    return {c: traverse_util.unflatten_dict({p[1:]: v for p, v in out.items() if p[0] == c})
            for c in ("params", "batch_stats")}


def _carrier_path(path, flat):
    """``P/conv/...`` or ``P/bn/...`` of a plain layer -> the same under ``P/<carrier>``."""
    for i in range(len(path) - 1, 0, -1):
        if path[i] in ("conv", "bn"):
            for carrier in CARRIERS:
                candidate = path[:i] + (carrier,) + path[i:]
                if candidate in flat:
                    return candidate
    return None


def _is_output_norm(path) -> bool:
    for i, part in enumerate(path):
        norm = OUTPUT_NORMS.get(part)
        if norm is not None and path[i + 1:-1] == norm:
            return True
    return False
