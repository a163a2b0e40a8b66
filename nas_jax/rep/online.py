"""Online re-parameterization (OREPA, Hu et al., CVPR 2022): blocks whose linear
branches end in a per-output-channel scale vector (OREPA's linear scaling layer) instead
of a BatchNorm each, so the whole block is linear before its one BatchNorm. A training
step collapses the branches into one KxK kernel (a few small einsums on the weights) and
runs one conv and one BatchNorm: a plain network's cost, where the exact blocks run every
branch on the feature maps. The branches still shape the optimisation (their products and
sums are a different parameterisation of the same kernel), and each block fuses exactly:
the collapsed kernel with its BatchNorm folded. Scales start at one.

Without a BatchNorm between a 1x1 conv and the KxK op after it, the zero padding of the
KxK op is what the merged conv pads with, so every branch merges exactly (no BN-and-pad).

``OnlineDBB`` (``block='orepa'``) has the DBB's four branches. Parameters of a block
(``K = kernel_size``, ``g = groups``, kernels HWIO):

* ``conv/kernel`` [K, K, in/g, out], ``conv/scale`` [out]: the KxK branch (named like a
  plain layer's conv, so ``branches_from_plain`` carries a plain layer over);
* ``orepa_1x1/kernel`` [1, 1, in/g, out], ``orepa_1x1/scale`` [out] (absent when depthwise);
* ``orepa_avg/kernel`` [1, 1, in/g, out] (absent when depthwise), ``orepa_avg/scale`` [out]:
  1x1 conv then a KxK average pool counting the zero padding;
* ``orepa_1x1_kxk/idconv1`` [1, 1, in/g, in] (zero-initialised, the identity added, when
  the internal width equals the input width) or ``/conv1`` [1, 1, in/g, internal], then
  ``orepa_1x1_kxk/conv2`` [K, K, internal/g, out] and ``orepa_1x1_kxk/scale`` [out];
* ``bn``: the block's BatchNorm.

``OnlineRepNASBlock`` (``block='repnas_online'``) has the RepNAS block's six primitives and
its identity, each weighted by the search's branch weights at the kernel level. Parameters,
in ``PRIMITIVES`` order (the 3x3 named ``conv``, as above):

* ``conv1x1/kernel`` [1, 1, in/g, out]; ``avgpool/kernel`` [1, 1, in/g, out] (then a 3x3
  average pool); ``conv/kernel`` [3, 3, in/g, out]; ``conv1x1_3x3/conv1`` [1, 1, in/g, in]
  (identity-based, zero-initialised; stride 1 only) and ``conv1x1_3x3/conv2`` [3, 3, in/g,
  out]; ``conv1x3/kernel`` [1, 3, in/g, out]; ``conv3x1/kernel`` [3, 1, in/g, out];
* a ``scale`` [out] in each of those, and ``identity/scale`` [out] where the block has the
  identity (stride 1, equal widths);
* ``bn``: the block's BatchNorm.
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


def _conv(x, kernel, strides, padding, groups):
    return jax.lax.conv_general_dilated(x, kernel, (strides, strides), ((padding, padding), (padding, padding)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _with_chain(kernel, chain, groups):
    """``kernel`` plus the composed 1x1-KxK ``chain`` (``(first, second)``, or None)."""
    return kernel if chain is None else kernel + T.compose_1x1_kxk(*chain, groups)


def _fold_block_bn(kernel, variables):
    """``(kernel, bias)`` of the collapsed ``kernel`` with the block's BatchNorm ``bn`` folded in."""
    return T.fold_batchnorm(kernel, *bn_args(variables["params"]["bn"], variables["batch_stats"]["bn"]))


def compose_on_weights(chain, groups, input_hw, strides, batch) -> bool:
    """Whether composing ``chain`` (``first`` [1, 1, in/g, mid], ``second`` [K, K, mid/g,
    out]) into one kernel costs fewer multiply-adds than running it on the feature maps:
    ``first`` on the ``input_hw`` map, ``second`` as extra input channels of the block's
    conv. Per group, with ``P`` output and ``Q`` input positions of the per-device batch
    (``batch`` split over all devices): composing costs ``i * m * K^2 * o``, the maps
    ``Q * i * m + P * m * K^2 * o``, so the weights win once ``P`` exceeds about the
    input width (large images, large batches) and lose on small maps of wide layers."""
    first, second = chain
    i, m = first.shape[2], second.shape[2]
    k1, k2, o = second.shape[0], second.shape[1], second.shape[3] // groups
    per_device = max(1, batch // jax.device_count())
    q = per_device * input_hw[0] * input_hw[1]
    p = per_device * ((input_hw[0] - 1) // strides + 1) * ((input_hw[1] - 1) // strides + 1)
    return i * m * k1 * k2 * o <= q * i * m + p * m * k1 * k2 * o


def _collapsed_conv_bn(module, x, kernel, chain, strides, padding, groups, train):
    """``module``'s BatchNorm ``bn`` of ``conv(x, kernel + compose(*chain))`` (padding
    ``padding`` on both sides of both axes; ``chain`` None: ``conv(x, kernel)``), computed
    as one conv: with the chain composed into the kernel, or, where ``compose_on_weights``
    says that costs more, with ``first``'s output map as extra input channels (per group)
    and ``second`` as their kernel rows. Both are the same linear map (the zero padding of
    ``second``'s input is the conv's own)."""
    dtype = module.dtype or jnp.promote_types(x.dtype, kernel.dtype)
    x = x.astype(dtype)
    if chain is None or compose_on_weights(chain, groups, x.shape[1:3], strides, x.shape[0]):
        y = _conv(x, _with_chain(kernel, chain, groups).astype(dtype), strides, padding, groups)
    else:
        first, second = chain
        hidden = _conv(x, first.astype(dtype), 1, 0, groups)
        both = jnp.concatenate([x.reshape(*x.shape[:3], groups, -1), hidden.reshape(*hidden.shape[:3], groups, -1)],
                               axis=-1).reshape(*x.shape[:3], -1)
        y = _conv(both, jnp.concatenate([kernel, second], axis=2).astype(dtype), strides, padding, groups)
    return batch_norm(module.dtype)(y, use_running_average=not train)


def _branch_params(module, branch_shapes):
    """Creates (or reads) every branch's parameters: ``{branch: {name: array}}``."""
    return {name: _BranchWeights(module.features, shapes, zero_init, name=name)()
            for name, shapes, zero_init in branch_shapes}


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

    def _kernel_and_chain(self, params):
        """The summed [K, K, in/g, out] kernel of the KxK, 1x1 and average-pool branches,
        and the 1x1-KxK branch as ``(first [1, 1, in/g, internal], second [K, K,
        internal/g, out])`` with its scale in ``second``."""
        k, g, c = self.kernel_size, self.groups, self.features
        origin = params["conv"]
        kernel = origin["kernel"] * origin["scale"]
        if "orepa_1x1" in params:
            p = params["orepa_1x1"]
            kernel += T.pad_to_size(p["kernel"] * p["scale"], k)
        p = params["orepa_avg"]
        avg = T.compose_1x1_avg(p["kernel"], k) if "kernel" in p else T.avg_pool_kernel(c, k, g, kernel.dtype)
        kernel += avg * p["scale"]
        p = params["orepa_1x1_kxk"]
        first = T.identity_based(p["idconv1"], g) if "idconv1" in p else p["conv1"]
        return kernel, (first, p["conv2"] * p["scale"])

    def collapsed_kernel(self, params, in_channels):
        """The one [K, K, in/g, out] kernel the four scaled branches sum to (float32 or
        the parameters' dtype), from the block's ``params``."""
        return _with_chain(*self._kernel_and_chain(params), self.groups)

    @nn.compact
    def __call__(self, x, train: bool = False):
        params = _branch_params(self, self._branch_shapes(x.shape[-1]))
        kernel, chain = self._kernel_and_chain(params)
        p = self.kernel_size // 2 if self.padding is None else self.padding
        return _collapsed_conv_bn(self, x, kernel, chain, self.strides, p, self.groups, train)

    def fuse(self, variables, in_channels):
        return _fold_block_bn(self.collapsed_kernel(variables["params"], in_channels), variables)


ONLINE_PRIMITIVES = ("conv1x1", "avgpool", "conv", "conv1x1_3x3", "conv1x3", "conv3x1")  # PRIMITIVES order


class OnlineRepNASBlock(nn.Module):
    """The RepNAS block (``RepNASBlock``'s primitives, identity, ``static_mask`` and
    ``branch_weights/w``) trained online: ``out = BN(conv3x3(x, K))`` with ``K = scale_id *
    I + sum_i w_i * scale_i * K_i`` over the primitives of the static mask (see the module
    doc). A branch weighted 0 adds nothing, so a search's per-step mask is a kernel-level
    select: give the masked branches weight 0 (the search's ``dense`` form, which here
    costs nothing extra); the ``branch_weights/mask`` of the per-branch ``cond`` form is
    refused. With no branch left and no identity the block falls back to ``conv``,
    unweighted.
    """
    features: int
    strides: int = 1
    groups: int = 1
    static_mask: Optional[Tuple[bool, ...]] = None
    dtype: Any = None

    def _branch_shapes(self, in_channels):
        """``(name, kernel shapes, zero-initialised names)`` of each branch, primitives
        in ``ONLINE_PRIMITIVES`` order, then the identity where the block has one."""
        g, c = self.groups, self.features
        i = in_channels // g
        mixed = (("conv1", (1, 1, i, in_channels)),) if self.strides == 1 else ()
        branches = [("conv1x1", (("kernel", (1, 1, i, c)),), ()), ("avgpool", (("kernel", (1, 1, i, c)),), ()),
                    ("conv", (("kernel", (3, 3, i, c)),), ()),
                    ("conv1x1_3x3", mixed + (("conv2", (3, 3, i, c)),), ("conv1",)),
                    ("conv1x3", (("kernel", (1, 3, i, c)),), ()), ("conv3x1", (("kernel", (3, 1, i, c)),), ())]
        if self.strides == 1 and in_channels == c:
            branches.append(("identity", (), ()))
        return branches

    def _kernel_and_chain(self, params, in_channels, branch_weights):
        """The summed [3, 3, in/g, out] kernel of the identity and the primitives of the
        static mask (each scaled by its scale vector and its entry of ``branch_weights``
        [6], None: unscaled), and, at stride 1 where ``conv1x1_3x3`` is kept, that branch as
        ``(first [1, 1, in/g, in], second [3, 3, in/g, out])`` (weights in ``second``), or None."""
        g = self.groups
        mask = self.static_mask if self.static_mask is not None else (True,) * len(ONLINE_PRIMITIVES)
        kept = [i for i, keep in enumerate(mask) if keep]
        if not kept and "identity" not in params:
            kept, branch_weights = [2], None
        dtype = params["conv"]["scale"].dtype
        kernel, chain = jnp.zeros((3, 3, in_channels // g, self.features), dtype), None
        if "identity" in params:
            kernel += T.identity_kernel(self.features, 3, g, dtype) * params["identity"]["scale"]
        for i in kept:
            name = ONLINE_PRIMITIVES[i]
            p = params[name]
            scale = p["scale"] if branch_weights is None else p["scale"] * branch_weights[i]
            if name == "conv1x1_3x3" and "conv1" in p:
                chain = (T.identity_based(p["conv1"], g), p["conv2"] * scale)
            elif name == "conv1x1_3x3":
                kernel += p["conv2"] * scale
            elif name == "avgpool":
                kernel += T.compose_1x1_avg(p["kernel"], 3) * scale
            else:
                kernel += T.pad_to_size(p["kernel"], 3) * scale
        return kernel, chain

    def collapsed_kernel(self, params, in_channels, branch_weights=None):
        """The one [3, 3, in/g, out] kernel of the block's ``params``: the primitives of the
        static mask, each scaled by its entry of ``branch_weights`` [6] (None: unscaled), and
        the identity."""
        return _with_chain(*self._kernel_and_chain(params, in_channels, branch_weights), self.groups)

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.static_mask is not None and len(self.static_mask) != len(ONLINE_PRIMITIVES):
            raise ValueError(f"static_mask needs {len(ONLINE_PRIMITIVES)} entries, got {self.static_mask}")
        if self.has_variable("branch_weights", "mask"):
            raise ValueError("the online RepNAS block applies a mask at the kernel level: give the masked "
                             "branches weight 0 in branch_weights/w (branch_compute='dense'), not a "
                             "branch_weights/mask")
        params = _branch_params(self, self._branch_shapes(x.shape[-1]))
        weights = self.get_variable("branch_weights", "w") if self.has_variable("branch_weights", "w") else None
        kernel, chain = self._kernel_and_chain(params, x.shape[-1], weights)
        return _collapsed_conv_bn(self, x, kernel, chain, self.strides, 1, self.groups, train)

    def fuse(self, variables, in_channels, branch_weights=None):
        """``branch_weights`` [6]: as ``RepNASBlock.fuse`` (default unscaled)."""
        return _fold_block_bn(self.collapsed_kernel(variables["params"], in_channels, branch_weights), variables)
