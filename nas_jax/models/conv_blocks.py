"""How a model asks for a conv-BN layer: the block kind decides which module it gets.

The kinds are the rows of ``nas_jax.rep.kinds.KINDS`` (plain, dbb, orepa, repnas,
repnas_online, deploy). Every layer is created under the name the caller gives, so the
kinds of one model share their layer paths.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp

from nas_jax.rep.blocks import ConvBN
from nas_jax.rep.kinds import block_kind


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """Which block a model's conv-BN layers become.

    branch_mask: for ``repnas`` and ``repnas_online``, ``(("path/of/layer", (bool,) * 6), ...)`` fixes which
    primitives each RepNAS layer computes (a fixed sub-network); empty means all six.
    widths: ``(("path/of/layer", out_channels), ...)`` overrides the output width of the
    named layers (a pruned network); a depthwise layer takes its width from its input, so
    it is never listed. Empty means the model's own widths.
    """
    kind: str = "plain"
    dtype: Any = None
    branch_mask: Tuple[Tuple[str, Tuple[bool, ...]], ...] = ()
    widths: Tuple[Tuple[str, int], ...] = ()

    def __post_init__(self):
        block_kind(self.kind)  # a ValueError for an unknown kind

    def static_mask(self, path: str) -> Optional[Tuple[bool, ...]]:
        for p, m in self.branch_mask:
            if p == path:
                return tuple(bool(b) for b in m)
        return None

    def width(self, path: str, default: int) -> int:
        """The output width of layer ``path``: its override, else ``default``."""
        for p, w in self.widths:
            if p == path:
                return int(w)
        return default


def conv_block(spec: BlockSpec, parent: nn.Module, features: int, kernel_size: int, strides: int = 1,
               groups: int = 1, *, name: str) -> nn.Module:
    """The module for one conv-BN layer of ``parent``, called as ``layer(x, train)``.

    Padding is ``kernel_size // 2``. Must be called inside ``parent``'s compact method.
    ``features`` is replaced by the spec's width override for this layer, if any.
    """
    path = "/".join(parent.path + (name,))
    features = spec.width(path, features)
    kind = block_kind(spec.kind)
    if not kind.applies(kernel_size):
        return ConvBN(features, kernel_size, strides, None, groups, dtype=spec.dtype, name=name)
    if kind.searchable:
        return kind.module(features, strides, groups, spec.static_mask(path), dtype=spec.dtype, name=name)
    return kind.module(features, kernel_size, strides, None, groups, dtype=spec.dtype, name=name)


def classify(x, num_classes: int, dtype=None):
    """Global average pool then a linear layer named ``linear`` (call inside a compact
    method); logits in float32, or float64 when the network computes in float64."""
    x = x.mean(axis=(1, 2))
    logits = nn.Dense(num_classes, dtype=dtype, name="linear")(x)
    return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))


class ZooModel(nn.Module):
    """The attributes every zoo model shares; ``block_spec()`` turns them into the
    ``BlockSpec`` its layers are built with. Inputs NHWC."""
    num_classes: int = 1000
    width: float = 1.0
    block: str = "plain"
    branch_mask: Tuple = ()
    dtype: Any = None
    widths: Tuple = ()

    def block_spec(self) -> BlockSpec:
        return BlockSpec(self.block, self.dtype, self.branch_mask, self.widths)
