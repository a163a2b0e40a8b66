"""How a model asks for a conv-BN layer: the block kind decides which module it gets.

``block`` kinds: ``plain`` (conv-BN), ``dbb`` (Diverse Branch Block where 1 < K < 7, the
official rule), ``orepa`` (the DBB's branches collapsed into one kernel at every step,
``nas_jax.rep.online``, same layers as ``dbb``), ``repnas`` (the RepNAS block for every
3x3 conv), ``repnas_online`` (the RepNAS block's branches collapsed into one kernel at
every step, same layers as ``repnas``) and ``deploy`` (one conv with bias, what every kind
fuses into). Every layer is created under the name the caller gives, so the kinds of one
model share their layer paths.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp

from nas_jax.rep.blocks import ConvBN, DeployConv, DiverseBranchBlock, RepNASBlock
from nas_jax.rep.online import OnlineDBB, OnlineRepNASBlock

BLOCK_KINDS = ("plain", "dbb", "orepa", "repnas", "repnas_online", "deploy")
MULTI_BRANCH_KINDS = ("dbb", "orepa", "repnas", "repnas_online")  # the kinds that train with branches and fuse


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
        if self.kind not in BLOCK_KINDS:
            raise ValueError(f"unknown block kind {self.kind!r}; choose one of {BLOCK_KINDS}")

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


def is_searchable(kind: str, kernel_size: int) -> bool:
    """Whether a KxK conv-BN becomes a multi-branch block under ``kind``."""
    return (kind in ("dbb", "orepa") and 1 < kernel_size < 7) or (kind in ("repnas", "repnas_online")
                                                                   and kernel_size == 3)


def conv_block(spec: BlockSpec, parent: nn.Module, features: int, kernel_size: int, strides: int = 1,
               groups: int = 1, *, name: str) -> nn.Module:
    """The module for one conv-BN layer of ``parent``, called as ``layer(x, train)``.

    Padding is ``kernel_size // 2``. Must be called inside ``parent``'s compact method.
    ``features`` is replaced by the spec's width override for this layer, if any.
    """
    path = "/".join(parent.path + (name,))
    features = spec.width(path, features)
    if spec.kind == "deploy":
        return DeployConv(features, kernel_size, strides, None, groups, dtype=spec.dtype, name=name)
    if spec.kind == "dbb" and is_searchable("dbb", kernel_size):
        return DiverseBranchBlock(features, kernel_size, strides, None, groups, dtype=spec.dtype, name=name)
    if spec.kind == "orepa" and is_searchable("orepa", kernel_size):
        return OnlineDBB(features, kernel_size, strides, None, groups, dtype=spec.dtype, name=name)
    if spec.kind == "repnas" and is_searchable("repnas", kernel_size):
        return RepNASBlock(features, strides, groups, spec.static_mask(path), dtype=spec.dtype, name=name)
    if spec.kind == "repnas_online" and is_searchable("repnas_online", kernel_size):
        return OnlineRepNASBlock(features, strides, groups, spec.static_mask(path), dtype=spec.dtype, name=name)
    return ConvBN(features, kernel_size, strides, None, groups, dtype=spec.dtype, name=name)


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
