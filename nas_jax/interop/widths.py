"""A zoo model rebuilt at the per-layer widths a checkpoint's tensors have.

Checkpoints come at any channel list: an official MobileNet built from an edited channel
list, ``max(8, int(c * w))`` widths, a pruned network. ``model_at_widths`` reads each
layer's output width from the tensors and returns the zoo model with those widths as
overrides (``BlockSpec.widths``), and the classifier's class count.

A layer is what fuses into one deploy conv (``path/conv/kernel`` in ``block='deploy'``);
its output width is the last axis of its widest-window kernel in the checkpoint (every
KxK branch of a DBB or RepNAS block ends in the block's width; 1x1, 1xK and Kx1 branches
and a DBB's internal 1x1 may not). The model's structure (which shortcuts and expansion
layers exist) stays the nominal model's.
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from nas_jax.rep.fuse import deploy_form
from nas_jax.interop.torch_state_dict import flax_tensors

CLASSIFIER = "linear"


def state_dict_param_shapes(state_dict: Mapping) -> Dict[Tuple[str, ...], Tuple[int, ...]]:
    """``{params path: Flax-layout shape}`` of a state_dict in zoo (official) names."""
    return {path[1:]: array.shape for path, array in flax_tensors(state_dict).values() if path[0] == "params"}


def deploy_layer_kernels(model: nn.Module, input_shape) -> Dict[Tuple[str, ...], Tuple[int, ...]]:
    """``{layer path: deploy kernel shape}`` of a zoo model (HWIO; the classifier [in, out])."""
    deploy = deploy_form(model)
    shapes = jax.eval_shape(lambda x: deploy.init(jax.random.key(0), x, train=False),
                            jax.ShapeDtypeStruct(input_shape, jnp.float32))
    flat = traverse_util.flatten_dict(shapes["params"])
    return {path[:-2] if path[-2] == "conv" else path[:-1]: tuple(leaf.shape)
            for path, leaf in flat.items() if path[-1] == "kernel"}


def _layer_width(layer: Tuple[str, ...], kernels: Mapping[Tuple[str, ...], Tuple[int, ...]]):
    """The output width of ``layer`` from the checkpoint's kernels under it, or None."""
    under = [shape for path, shape in kernels.items() if path[:len(layer)] == layer and len(shape) == 4]
    if not under:
        return None
    return max(under, key=lambda shape: shape[0] * shape[1])[-1]


def model_at_widths(model: nn.Module, params: Mapping, input_shape=(1, 224, 224, 3)) -> nn.Module:
    """``model`` (a zoo model) with ``num_classes`` and every layer's output width as in
    ``params`` (a Flax ``params`` tree, or its flattened ``{path tuple: array}``, arrays or
    shapes). When a layer has no kernel in ``params``, or the widths do not chain, the
    checkpoint has another structure: the nominal model comes back (with the class count),
    and loading it names every missing and misshaped tensor."""
    flat = params if all(isinstance(k, tuple) for k in params) else traverse_util.flatten_dict(params)
    kernels = {path[:-1]: tuple(getattr(v, "shape", v)) for path, v in flat.items() if path[-1] == "kernel"}
    nominal = deploy_layer_kernels(model, input_shape)
    classifier = kernels.get((CLASSIFIER,))
    num_classes = classifier[-1] if classifier is not None else model.num_classes
    fallback = model.clone(num_classes=int(num_classes))
    widths = []
    for layer, shape in nominal.items():
        if layer == (CLASSIFIER,):
            continue
        width = _layer_width(layer, kernels)
        if width is None:  # another structure: loading the nominal model names what is missing
            return fallback
        if width != shape[-1]:
            widths.append(("/".join(layer), int(width)))
    fitted = fallback.clone(widths=tuple(sorted(widths)))
    try:
        deploy_layer_kernels(fitted, input_shape)
    except (TypeError, ValueError):  # widths that do not chain (another structure): as above
        return fallback
    return fitted
