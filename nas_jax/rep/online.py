"""Online re-parameterization (OREPA, Hu et al., CVPR 2022) of the Diverse Branch Block.

``OnlineDBB`` has the DBB's four linear branches (KxK; 1x1; 1x1 -> KxK average pool;
1x1 -> KxK) but no BatchNorm inside them: each branch ends in a per-output-channel
scale vector instead (OREPA's linear scaling layer), so the whole block is linear before
its one BatchNorm. A training step therefore collapses the branches into one KxK kernel
(a few small einsums on the weights) and runs one conv and one BatchNorm: a plain
network's cost, where the DBB runs every branch on the feature maps. The branches still
shape the optimisation (their products and sums are a different parameterisation of the
same kernel), and the block fuses exactly: the collapsed kernel with its BatchNorm folded.

Parameters of a block (``K = kernel_size``, ``g = groups``, kernels HWIO):

* ``conv/kernel`` [K, K, in/g, out], ``conv/scale`` [out]: the KxK branch (named like a
  plain layer's conv, so ``branches_from_plain`` carries a plain layer over);
* ``orepa_1x1/kernel`` [1, 1, in/g, out], ``orepa_1x1/scale`` [out] (absent when depthwise);
* ``orepa_avg/kernel`` [1, 1, in/g, out] (absent when depthwise), ``orepa_avg/scale`` [out]:
  1x1 conv then a KxK average pool counting the zero padding;
* ``orepa_1x1_kxk/idconv1`` [1, 1, in/g, in] (zero-initialised, the identity added, when
  the internal width equals the input width) or ``/conv1`` [1, 1, in/g, internal], then
  ``orepa_1x1_kxk/conv2`` [K, K, internal/g, out] and ``orepa_1x1_kxk/scale`` [out];
* ``bn``: the block's BatchNorm.

Without a BatchNorm between a 1x1 conv and the KxK op after it, the zero padding of the
KxK op is what the merged conv pads with, so every branch merges exactly (no BN-and-pad).
Scales start at one.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from nas_jax.rep import transforms as T
from nas_jax.rep.blocks import DiverseBranchBlock, batch_norm, bn_args


class _BranchWeights(nn.Module):
    """The parameters of one branch: kernels ``shapes`` ((name, shape), ...), lecun-normal
    or zeros for names in ``zero_init``, and ``scale`` [features] (ones)."""
    features: int
    shapes: Tuple[Tuple[str, Tuple[int, ...]], ...] = ()
    zero_init: Tuple[str, ...] = ()

    @nn.compact
    def __call__(self):
        weights = {name: self.param(name, nn.initializers.zeros if name in self.zero_init
                                    else nn.initializers.lecun_normal(), shape) for name, shape in self.shapes}
        weights["scale"] = self.param("scale", nn.initializers.ones, (self.features,))
        return weights


class OnlineDBB(nn.Module):
    """A KxK conv-BN trained as the online-collapsed DBB (see the module doc)."""
    features: int
    kernel_size: int = 3
    strides: int = 1
    padding: Optional[int] = None
    groups: int = 1
    internal_channels: Optional[int] = None
    dtype: Any = None

    def _branch_shapes(self, in_channels):
        """``(name, kernel shapes, zero-initialised names)`` of each branch."""
        k, g, c = self.kernel_size, self.groups, self.features
        depthwise = DiverseBranchBlock.is_depthwise(in_channels, c, g)
        internal = DiverseBranchBlock.internal_width(in_channels, c, g, self.internal_channels)
        first = "idconv1" if internal == in_channels else "conv1"
        branches = [("conv", (("kernel", (k, k, in_channels // g, c)),), ())]
        if not depthwise:
            branches.append(("orepa_1x1", (("kernel", (1, 1, in_channels // g, c)),), ()))
        branches.append(("orepa_avg", () if depthwise else (("kernel", (1, 1, in_channels // g, c)),), ()))
        branches.append(("orepa_1x1_kxk", ((first, (1, 1, in_channels // g, internal)),
                                           ("conv2", (k, k, internal // g, c))), ("idconv1",)))
        return branches

    def collapsed_kernel(self, params, in_channels):
        """The one [K, K, in/g, out] kernel the four scaled branches sum to (float32 or
        the parameters' dtype), from the block's ``params``."""
        k, g, c = self.kernel_size, self.groups, self.features
        origin = params["conv"]
        kernel = origin["kernel"] * origin["scale"]
        dtype = kernel.dtype
        if "orepa_1x1" in params:
            p = params["orepa_1x1"]
            kernel += T.pad_to_size(p["kernel"] * p["scale"], k)
        p = params["orepa_avg"]
        avg = T.avg_pool_kernel(c, k, g, dtype)
        if "kernel" in p:
            avg = T.merge_1x1_kxk(p["kernel"], jnp.zeros((c,), dtype), avg, jnp.zeros((c,), dtype), g)[0]
        kernel += avg * p["scale"]
        p = params["orepa_1x1_kxk"]
        first = T.identity_based(p["idconv1"], g) if "idconv1" in p else p["conv1"]
        zeros = jnp.zeros((first.shape[-1],), dtype)
        second = T.merge_1x1_kxk(first, zeros, p["conv2"], jnp.zeros((c,), dtype), g)[0]
        return kernel + second * p["scale"]

    @nn.compact
    def __call__(self, x, train: bool = False):
        in_channels = x.shape[-1]
        params = {name: _BranchWeights(self.features, shapes, zero_init, name=name)()
                  for name, shapes, zero_init in self._branch_shapes(in_channels)}
        kernel = self.collapsed_kernel(params, in_channels)
        dtype = self.dtype or jnp.promote_types(x.dtype, kernel.dtype)
        p = self.kernel_size // 2 if self.padding is None else self.padding
        y = jax.lax.conv_general_dilated(x.astype(dtype), kernel.astype(dtype), (self.strides, self.strides),
                                         ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         feature_group_count=self.groups)
        return batch_norm(self.dtype)(y, use_running_average=not train)

    def fuse(self, variables, in_channels):
        kernel = self.collapsed_kernel(variables["params"], in_channels)
        return T.fold_batchnorm(kernel, *bn_args(variables["params"]["bn"], variables["batch_stats"]["bn"]))
