"""``fuse_params``: one call turns a trained multi-branch model into its deploy form."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
from flax import traverse_util
import jax.numpy as jnp

from nas_jax.rep.fold_batch_norms import fold_batch_norms, folded_model
from nas_jax.rep.kinds import FUSABLE_MODULES, kind_of_module
from nas_jax.rep.walk import intercept_modules


def fused_kernels(model: nn.Module, variables, input_shape: Sequence[int] = (1, 64, 64, 3)):
    """``{layer path: {'conv': {'kernel', 'bias'}}}`` for every conv-BN / DBB / RepNAS block
    of ``model`` (and every online DBB / RepNAS block), computed from ``variables`` with pure kernel transforms.

    The blocks are found by tracing the model once on a zero input of ``input_shape``
    (NHWC); under ``jax.jit`` that forward pass is dead code and is removed.
    """
    fused = {}

    def fuse(module, call, x):
        own = dict(module.variables)
        extra = {}
        if kind_of_module(module).searchable and "branch_weights" in own:
            extra["branch_weights"] = own["branch_weights"]["w"]
        kernel, bias = module.fuse(own, x.shape[-1], **extra)
        fused[module.path] = {"conv": {"kernel": kernel, "bias": bias}}
        return call(x)

    with intercept_modules([(FUSABLE_MODULES, fuse)]):
        model.apply(variables, jnp.zeros(input_shape, jnp.float32), train=False)
    return fused


def fuse_params(model: nn.Module, variables, *, input_shape: Sequence[int] = (1, 64, 64, 3)):
    """``(deploy_model, deploy_variables)`` for any zoo model, or any linen model with a
    ``block`` attribute that builds its conv-BN layers with ``nas_jax.models.conv_block``
    (its own layout: ``experiments/custom_model.py``).

    Pure: ``variables`` is not modified, and the call works under ``jax.jit`` over
    ``variables``. Every conv-BN, DBB and RepNAS block becomes one conv with bias at the
    same path; other parameters (the classifier) are carried over; BN statistics vanish.
    A RepNAS block keeps the branches of its static mask (the model's ``branch_mask``),
    each scaled by the ``branch_weights`` collection when ``variables`` carries one.

    Any other linen model (no ``block`` attribute: a user's or a published model with plain
    ``nn.Conv`` and BatchNorm) gets its conv-BatchNorm pairs folded instead
    (``nas_jax.rep.fold_batch_norms``).
    """
    if not _has_blocks(model):
        return fold_batch_norms(model, variables, input_shape=input_shape)
    deploy_model = deploy_form(model)
    fused = fused_kernels(model, variables, input_shape)
    depths = sorted({len(path) for path in fused})
    flat = {k: v for k, v in traverse_util.flatten_dict(variables["params"]).items()
            if not any(k[:n] in fused for n in depths)}  # the blocks' branches go
    for path, value in fused.items():
        flat.update({path + k: v for k, v in traverse_util.flatten_dict(value).items()})
    return deploy_model, {"params": traverse_util.unflatten_dict(flat)}


def _has_blocks(model: nn.Module) -> bool:
    """Whether ``model`` (or the model a wrapper holds in its ``model`` field, as
    ``nas_jax.models.AtWidths``) picks its layers by a ``block`` kind (a string attribute;
    flaxmodels' ResNet has a ``block`` field that is a module class)."""
    if isinstance(getattr(model, "block", None), str):
        return True
    inner = getattr(model, "model", None)
    return isinstance(inner, nn.Module) and _has_blocks(inner)


def deploy_form(model: nn.Module, variables=None, *, input_shape: Sequence[int] = (1, 64, 64, 3)) -> nn.Module:
    """The deploy model ``fuse_params`` returns, alone (e.g. to build a model before loading
    deploy weights, or to apply variables a jitted ``fuse_params`` computed). For a model
    with blocks (any block kind, inside its wrappers): ``block='deploy'``, no branch mask.
    For any other model: its ``FoldedBatchNorms``, found from the shapes of ``variables``
    (``jax.eval_shape`` structures work), which it then needs."""
    if not _has_blocks(model):
        if variables is None:
            raise ValueError(f"{type(model).__name__} has no nas_jax blocks (a `block` attribute): its deploy form "
                             "folds its conv-BatchNorm pairs, found from its variables; pass them")
        return folded_model(model, variables, input_shape=input_shape)
    fields = {f.name for f in dataclasses.fields(model)}
    if not isinstance(getattr(model, "block", None), str):
        return model.clone(model=deploy_form(model.model))
    return model.clone(block="deploy", **({"branch_mask": ()} if "branch_mask" in fields else {}))
