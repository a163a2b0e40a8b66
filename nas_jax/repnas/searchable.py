"""The searchable layers of a RepNAS supernet: which they are, what each branch costs,
and how a per-layer array ``[L, 6]`` (rows in network order, columns in ``PRIMITIVES``
order) becomes the model's ``branch_weights`` collection or static ``branch_mask``.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Sequence, Tuple

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.rep.blocks import PRIMITIVES, RepNASBlock
from nas_jax.rep.online import OnlineRepNASBlock
from nas_jax.rep.walk import intercept_modules

NUM_PRIMITIVES = len(PRIMITIVES)
# where each primitive's output scale lives inside a block's params, in PRIMITIVES order: the
# exact block's last BatchNorm of the primitive, the online block's per-branch scale vector
OUTPUT_SCALES = {"exact": ("_ops_0/bn", "_ops_1/bn2", "_ops_2/bn", "_ops_3/conv2/bn", "_ops_4/bn", "_ops_5/bn"),
                 "online": ("conv1x1", "avgpool", "conv", "conv1x1_3x3", "conv1x3", "conv3x1")}


@dataclasses.dataclass(frozen=True)
class SearchableLayer:
    """One RepNAS block of a model. ``path``: its module path, ``"stage1_0/conv1"``;
    ``input_hw``: its input's spatial size at the traced input size."""
    path: str
    in_channels: int
    out_channels: int
    strides: int
    groups: int
    input_hw: Tuple[int, int]

    @property
    def has_identity(self) -> bool:
        """Whether the block has the always-on BN-only identity branch."""
        return self.strides == 1 and self.in_channels == self.out_channels

    @property
    def output_hw(self) -> Tuple[int, int]:
        return tuple((n - 1) // self.strides + 1 for n in self.input_hw)

    def branch_macs(self) -> np.ndarray:
        """Forward multiply-accumulates of each primitive ``[6]`` (float64). A training
        step costs about three forward passes, so these are the training FLOPs up to a
        common factor; the BN-only identity is free and not a primitive."""
        h, w = self.output_hw
        per_tap = h * w * self.out_channels * self.in_channels // self.groups
        input_1x1 = self.input_hw[0] * self.input_hw[1] * self.out_channels * self.in_channels // self.groups
        pool = 9 * h * w * self.out_channels
        one_by_one = self.input_hw[0] * self.input_hw[1] * self.in_channels * self.in_channels // self.groups
        return np.array([per_tap,                                          # conv1x1
                         input_1x1 + pool,                                 # 1x1 -> avg pool
                         9 * per_tap,                                      # conv3x3
                         (one_by_one if self.strides == 1 else 0) + 9 * per_tap,  # 1x1 -> 3x3
                         3 * per_tap, 3 * per_tap], np.float64)            # conv1x3, conv3x1


def find_searchable_layers(model: nn.Module, input_shape: Sequence[int]) -> Tuple[SearchableLayer, ...]:
    """The RepNAS blocks of ``model`` (built with ``block='repnas'`` or ``'repnas_online'``) in the order the
    forward pass calls them, found by tracing ``model.init`` abstractly on an NHWC input
    of ``input_shape`` (nothing is computed).

    Raises ``ValueError`` when the model has none (no 3x3 conv-BN, or another block kind).
    """
    found = []

    def record(module, call, x):
        found.append(SearchableLayer("/".join(module.path), x.shape[-1], module.features, module.strides,
                                     module.groups, tuple(x.shape[1:3])))
        return call(x)

    with intercept_modules([((RepNASBlock, OnlineRepNASBlock), record)]):
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                       jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32))
    if not found:
        raise ValueError(f"{type(model).__name__} (block={getattr(model, 'block', None)!r}) has no RepNAS "
                         f"searchable layer: RepNAS searches 3x3 conv-BN layers of a block='repnas' (or 'repnas_online') model")
    return tuple(found)


def scale_primitive_outputs(params, layers: Sequence[SearchableLayer], factor: float, online: bool = False):
    """``params`` with the output scale of every primitive (the gamma of its last
    BatchNorm; the online block's scale vector) of every searchable layer *with an
    identity branch* multiplied by ``factor``; everything else unchanged. 0 starts those
    layers as their identity branch alone, so every mask starts from the same network.
    A layer without identity is left alone: silenced, it would output exactly 0, and a
    ReLU after it would pass no gradient back to it, ever."""
    wanted = {f"{layer.path}/{branch}/scale" for layer in layers if layer.has_identity
              for branch in OUTPUT_SCALES["online" if online else "exact"]}
    flat = traverse_util.flatten_dict(params, sep="/")
    missing = wanted - set(flat)
    if missing:
        raise ValueError(f"no primitive output scale at {sorted(missing)[:3]}: not a RepNAS supernet's params")
    return traverse_util.unflatten_dict({k: v * factor if k in wanted else v for k, v in flat.items()}, sep="/")


def branch_weights_collection(paths: Sequence[str], weights, mask=None) -> Dict:
    """The ``branch_weights`` collection: ``w = weights[l]`` (and ``mask = mask[l]``, the
    dynamic mask, when given) under each layer's path; ``weights``/``mask`` ``[L, 6]``."""
    rows = [{"w": weights[i]} if mask is None else {"w": weights[i], "mask": mask[i]} for i in range(len(paths))]
    return traverse_util.unflatten_dict(dict(zip(paths, rows)), sep="/")


def static_branch_mask(paths: Sequence[str], mask) -> Tuple[Tuple[str, Tuple[bool, ...]], ...]:
    """The models' ``branch_mask`` argument (a fixed sub-network) from a 0/1 ``[L, 6]`` mask."""
    mask = np.asarray(mask)
    if mask.shape != (len(paths), NUM_PRIMITIVES):
        raise ValueError(f"mask of shape {mask.shape} for {len(paths)} layers; expected {(len(paths), NUM_PRIMITIVES)}")
    return tuple((p, tuple(bool(b) for b in row)) for p, row in zip(paths, mask))
