"""Flax linen blocks of re-parameterizable networks, and how each fuses into one conv.

Inputs are NHWC. Every block's submodule names mirror the official PyTorch modules
(``dbb_origin``, ``dbb_1x1_kxk/bn1/bn``, ``_ops_3/conv2/bn`` ...), so a PyTorch key
``a.b.0.c.weight`` lives at Flax path ``a/b_0/c/kernel`` (see ``nas_jax.interop``).

Every trainable block and every branch inside one has the same ``fuse(variables,
in_channels)`` method: a pure function of the module's own variables (``{'params': ...,
'batch_stats': ...}``) that returns the ``(kernel [kh, kw, in/g, out], bias [out])`` of the
equivalent conv; a block sums its branches' kernels zero-padded to its KxK
(``fuse_branches``).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nas_jax.rep import transforms as T

BN_MOMENTUM = 0.9  # PyTorch momentum 0.1
PRIMITIVES = ("conv1x1", "avgpool", "conv3x3", "conv1x1_3x3", "conv1x3", "conv3x1")
OFFICIAL_PRIMITIVES = ("Conv_1x1", "AvgPoolBN", "Conv_3x3", "Conv_1x1_3x3", "Conv_1x3", "Conv_3x1")


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def batch_norm(dtype, name="bn"):
    return nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=T.BN_EPS, dtype=dtype, name=name)


def _conv(features, kernel_size, strides, padding, groups, dtype, name, use_bias=False):
    kh, kw = _pair(kernel_size)
    ph, pw = _pair(padding)
    return nn.Conv(features, (kh, kw), strides=_pair(strides), padding=((ph, ph), (pw, pw)),
                   feature_group_count=groups, use_bias=use_bias, dtype=dtype, name=name)


def bn_args(params, stats):
    """(scale, bias, mean, var) of a BatchNorm, or of the BN inside a BN-and-pad."""
    if "bn" in params:
        params, stats = params["bn"], stats["bn"]
    return params["scale"], params["bias"], stats["mean"], stats["var"]


def _fold(kernel, params, stats):
    return T.fold_batchnorm(kernel, *bn_args(params, stats))


def _fold_conv_bn(params, stats):
    """Fused (kernel, bias) of a ConvBN's variables."""
    return _fold(params["conv"]["kernel"], params["bn"], stats["bn"])


def _own(variables, name):
    """The variables of submodule ``name`` (every collection that has it)."""
    return {c: tree[name] for c, tree in variables.items() if name in tree}


def fuse_branches(branches, variables, in_channels, size, weights=None):
    """The summed ``(kernel [size, size, in/g, out], bias)`` of the unbound branch modules
    ``branches`` (each with its ``name`` and ``fuse``) from their parent's ``variables``,
    each scaled by its entry of ``weights`` when that is given (None: unscaled)."""
    fused = []
    for i, branch in enumerate(branches):
        kernel, bias = branch.fuse(_own(variables, branch.name), in_channels)
        w = None if weights is None else weights[i]
        if w is not None:
            kernel, bias = kernel * w, bias * w
        fused.append((T.pad_to_size(kernel, size), bias))
    return T.sum_branches(fused)


def _avg_pool(x, size, strides, padding):
    return nn.avg_pool(x, (size, size), strides=(strides, strides),
                       padding=((padding, padding), (padding, padding)), count_include_pad=True)


class BNAndPad(nn.Module):
    """BatchNorm, then a border of ``pad`` pixels filled with the BN's output for a zero
    input, ``bias - mean * scale / sqrt(var + eps)`` (running statistics, no gradient).

    A KxK conv with padding 0 after it equals the conv with padding on the un-padded
    map plus that constant border: the reason DBB's 1x1-KxK branch fuses exactly.
    """
    pad: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = batch_norm(self.dtype)
        y = bn(x, use_running_average=not train)
        if self.pad == 0:
            return y
        scale, bias, mean, var = jax.lax.stop_gradient(
            bn_args(bn.variables["params"], bn.variables["batch_stats"]))
        fill = (bias - mean * scale / jnp.sqrt(var + T.BN_EPS)).astype(y.dtype)
        p = self.pad
        inside = np.pad(np.ones(y.shape[1:3], bool), p)[None, :, :, None]
        return jnp.where(inside, jnp.pad(y, ((0, 0), (p, p), (p, p), (0, 0))), fill)


class ConvBN(nn.Module):
    """Conv (no bias) then BatchNorm; ``bn_pad > 0`` makes the BN a BN-and-pad."""
    features: int
    kernel_size: Any = 3
    strides: int = 1
    padding: Any = None  # default: kernel_size // 2 per axis
    groups: int = 1
    bn_pad: int = 0
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        padding = self.padding if self.padding is not None else tuple(k // 2 for k in _pair(self.kernel_size))
        x = _conv(self.features, self.kernel_size, self.strides, padding, self.groups, self.dtype, "conv")(x)
        if self.bn_pad:
            return BNAndPad(self.bn_pad, self.dtype, name="bn")(x, train)
        return batch_norm(self.dtype)(x, use_running_average=not train)

    def fuse(self, variables, in_channels):
        return _fold_conv_bn(variables["params"], variables["batch_stats"])


class DeployConv(nn.Module):
    """The inference form of any block: one KxK conv with bias, named ``conv``."""
    features: int
    kernel_size: Any = 3
    strides: int = 1
    padding: Any = None
    groups: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        padding = self.padding if self.padding is not None else tuple(k // 2 for k in _pair(self.kernel_size))
        return _conv(self.features, self.kernel_size, self.strides, padding, self.groups, self.dtype,
                     "conv", use_bias=True)(x)


class DiverseBranchBlock(nn.Module):
    """The Diverse Branch Block (DBB) of a KxK conv-BN, as the official implementation.

    Branches, summed: ``dbb_origin`` KxK conv-BN; ``dbb_1x1`` 1x1 conv-BN (absent when
    depthwise, ``groups >= features``); ``dbb_avg`` 1x1 conv -> BN-and-pad -> KxK avg pool
    -> BN (depthwise: zero-padded avg pool -> BN); ``dbb_1x1_kxk`` 1x1 conv (identity-based
    ``idconv1`` when the internal width equals the input width, else ``conv1``) ->
    BN-and-pad -> KxK conv with padding 0 -> BN. The internal width defaults to the input
    width, or twice it when depthwise. Depthwise means ``groups >= features == in``: the
    official rule ``groups >= features``, restricted to where the official code runs.
    """
    features: int
    kernel_size: int = 3
    strides: int = 1
    padding: Optional[int] = None
    groups: int = 1
    internal_channels: Optional[int] = None
    dtype: Any = None

    @staticmethod
    def is_depthwise(in_channels, features, groups):
        return groups >= features == in_channels

    @staticmethod
    def internal_width(in_channels, features, groups, internal_channels=None):
        if internal_channels is not None:
            return internal_channels
        return 2 * in_channels if DiverseBranchBlock.is_depthwise(in_channels, features, groups) else in_channels

    def _branches(self, in_channels, **unbound):
        """The branch modules, in summation order (``parent=None``: unbound, for ``fuse``)."""
        k, s, g, c, d = self.kernel_size, self.strides, self.groups, self.features, self.dtype
        p = k // 2 if self.padding is None else self.padding
        depthwise = self.is_depthwise(in_channels, c, g)
        internal = self.internal_width(in_channels, c, g, self.internal_channels)
        first = "idconv1" if internal == in_channels else "conv1"
        return ([ConvBN(c, k, s, p, g, dtype=d, name="dbb_origin", **unbound)]
                + ([] if depthwise else [ConvBN(c, 1, s, 0, g, dtype=d, name="dbb_1x1", **unbound)])
                + [_DBBAvgBranch(c, k, s, p, g, depthwise, d, name="dbb_avg", **unbound),
                   _OneByOneKxK(c, k, s, p, g, internal, first, d, name="dbb_1x1_kxk", **unbound)])

    @nn.compact
    def __call__(self, x, train: bool = False):
        branches = self._branches(x.shape[-1])
        out = branches[0](x, train)
        for branch in branches[1:]:
            out += branch(x, train)
        return out

    def fuse(self, variables, in_channels):
        return fuse_branches(self._branches(in_channels, parent=None), variables, in_channels, self.kernel_size)


class _DBBAvgBranch(nn.Module):
    features: int
    kernel_size: int
    strides: int
    padding: int
    groups: int
    depthwise: bool
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train):
        k = self.kernel_size
        if not self.depthwise:
            x = _conv(self.features, 1, 1, 0, self.groups, self.dtype, "conv")(x)
            x = BNAndPad(self.padding, self.dtype, name="bn")(x, train)
            x = _avg_pool(x, k, self.strides, 0)
        else:
            x = _avg_pool(x, k, self.strides, self.padding)
        return batch_norm(self.dtype, "avgbn")(x, use_running_average=not train)

    def fuse(self, variables, in_channels):
        params, stats = variables["params"], variables["batch_stats"]
        avg = _fold(T.avg_pool_kernel(self.features, self.kernel_size, self.groups, params["avgbn"]["scale"].dtype),
                    params["avgbn"], stats["avgbn"])
        if "conv" not in params:
            return avg
        first = _fold(params["conv"]["kernel"], params["bn"], stats["bn"])
        return T.merge_1x1_kxk(*first, *avg, self.groups)


class _OneByOneKxK(nn.Module):
    """1x1 conv (``idconv1``: kernel + identity; ``conv1``: plain) -> BN-and-pad -> KxK conv
    with padding 0 -> BN (named ``conv2``/``bn2``)."""
    features: int
    kernel_size: int
    strides: int
    padding: int
    groups: int
    internal: int
    first_name: str
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train):
        x = _IdentityBased1x1(self.groups, self.dtype, name="idconv1")(x) if self.first_name == "idconv1" \
            else _conv(self.internal, 1, 1, 0, self.groups, self.dtype, "conv1")(x)
        x = BNAndPad(self.padding, self.dtype, name="bn1")(x, train)
        x = _conv(self.features, self.kernel_size, self.strides, 0, self.groups, self.dtype, "conv2")(x)
        return batch_norm(self.dtype, "bn2")(x, use_running_average=not train)

    def fuse(self, variables, in_channels):
        params, stats, groups = variables["params"], variables["batch_stats"], self.groups
        if "idconv1" in params:
            first = T.identity_based(params["idconv1"]["kernel"], groups)
        else:
            first = params["conv1"]["kernel"]
        first = _fold(first, params["bn1"], stats["bn1"])
        second = _fold(params["conv2"]["kernel"], params["bn2"], stats["bn2"])
        return T.merge_1x1_kxk(*first, *second, groups)


class _IdentityBased1x1(nn.Module):
    """A 1x1 conv whose kernel is ``kernel + identity`` (``kernel`` initialised at zero)."""
    groups: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        w = self.param("kernel", nn.initializers.zeros, (1, 1, c // self.groups, c))
        w = T.identity_based(w, self.groups).astype(self.dtype or x.dtype)
        return jax.lax.conv_general_dilated(x.astype(w.dtype), w, (1, 1), "VALID",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=self.groups)


class RepNASBlock(nn.Module):
    """The RepNAS searchable block (the official ``MixedOp`` without its activation).

    ``out = skip_connect(x) + sum_i w_i * op_i(x)`` over the six primitives of
    ``PRIMITIVES`` (submodules ``_ops_0`` .. ``_ops_5``) and a BN-only identity
    ``skip_connect`` where ``strides == 1`` and the widths match. ``w`` ([6]) comes from the
    ``branch_weights`` collection (variable ``w``) when the caller provides it, else ones.
    ``static_mask`` (6 bools) says which branches exist in the computation at all; a
    branch whose static mask is False is not computed. With no branch left and no
    identity the block falls back to ``conv3x3``, unweighted. At init every branch is
    created, so a supernet and its fixed sub-networks share one variable layout.

    A dynamic mask (a search whose mask changes every step, under ``jit``): when the
    ``branch_weights`` collection also holds ``mask`` ([6], nonzero = kept), each branch of
    the static mask runs under ``nn.cond`` on its entry, so a masked branch is neither
    computed (forward or backward) nor updates its BatchNorm statistics; an empty layer
    without identity falls back to ``conv3x3``, unweighted, as with a static mask.
    """
    features: int
    strides: int = 1
    groups: int = 1
    static_mask: Optional[Tuple[bool, ...]] = None
    dtype: Any = None

    def _ops(self, **unbound):
        """The six primitives in ``PRIMITIVES`` order (``parent=None``: unbound, for ``fuse``)."""
        c, s, g, d = self.features, self.strides, self.groups, self.dtype
        return (
            ConvBN(c, 1, s, 0, g, dtype=d, name="_ops_0", **unbound),
            _AvgPoolBN(c, s, g, d, name="_ops_1", **unbound),
            ConvBN(c, 3, s, 1, g, dtype=d, name="_ops_2", **unbound),
            _Conv1x1Conv3x3(c, s, g, d, name="_ops_3", **unbound),
            ConvBN(c, (1, 3), s, (0, 1), g, dtype=d, name="_ops_4", **unbound),
            ConvBN(c, (3, 1), s, (1, 0), g, dtype=d, name="_ops_5", **unbound),
        )

    @nn.compact
    def __call__(self, x, train: bool = False):
        mask = self.static_mask if self.static_mask is not None else (True,) * len(PRIMITIVES)
        if len(mask) != len(PRIMITIVES):
            raise ValueError(f"static_mask needs {len(PRIMITIVES)} entries, got {mask}")
        if self.has_variable("branch_weights", "w"):
            w = self.get_variable("branch_weights", "w")
        else:
            w = jnp.ones((len(PRIMITIVES),), jnp.float32)
        out = None
        if self.strides == 1 and x.shape[-1] == self.features:
            out = _SkipBN(self.groups, self.dtype, name="skip_connect")(x, train)
        if self.has_variable("branch_weights", "mask") and not self.is_initializing():
            return self._dynamic_branches(x, train, mask, w, out)
        ops = self._ops()
        for i, op in enumerate(ops):
            if mask[i] or self.is_initializing():
                y = op(x, train) * w[i].astype(x.dtype if self.dtype is None else self.dtype)
                if mask[i]:
                    out = y if out is None else out + y
        if out is None:
            out = ops[2](x, train)
        return out

    def _dynamic_branches(self, x, train, static_mask, w, out):
        """``out`` (the identity's output or None) plus each branch under ``nn.cond`` on
        the ``branch_weights/mask`` entry; see the class docstring."""
        keep = self.get_variable("branch_weights", "mask") != 0
        keep = keep & jnp.asarray(static_mask)
        fallback = jnp.logical_not(keep.any()) if out is None else jnp.bool_(False)
        dtype = self.dtype or jnp.promote_types(x.dtype, jnp.float32)
        out_hw = [(n - 1) // self.strides + 1 for n in x.shape[1:3]]
        zeros = jnp.zeros((x.shape[0], *out_hw, self.features), dtype)
        for i in range(len(PRIMITIVES)):
            if not static_mask[i]:
                continue
            run, weight = keep[i], w[i]
            if i == 2:  # the fallback branch
                run, weight = run | fallback, jnp.where(keep[i], weight, 1.0)

            def computed(mdl, x, weight, i=i):
                return mdl._ops()[i](x, train) * weight.astype(dtype)

            y = nn.cond(run, computed, lambda mdl, x, weight: zeros, self, x, weight)
            out = y if out is None else out + y
        return out

    def fuse(self, variables, in_channels, branch_weights=None):
        """``branch_weights`` [6] scales the kept branches (default: unscaled, the fixed-mask
        value); the identity and the ``conv3x3`` fallback of an empty layer are unscaled."""
        mask = self.static_mask if self.static_mask is not None else (True,) * len(PRIMITIVES)
        ops = self._ops(parent=None)
        kept = [i for i in range(len(PRIMITIVES)) if mask[i]]
        branches = [ops[i] for i in kept]
        weights = [None if branch_weights is None else branch_weights[i] for i in kept]
        if "skip_connect" in variables["params"]:
            branches.insert(0, _SkipBN(self.groups, self.dtype, name="skip_connect", parent=None))
            weights.insert(0, None)
        if not branches:
            branches, weights = [ops[2]], [None]
        return fuse_branches(branches, variables, in_channels, 3, weights)


class _SkipBN(nn.Module):
    """The BN-only identity branch."""
    groups: int = 1
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train):
        return batch_norm(self.dtype)(x, use_running_average=not train)

    def fuse(self, variables, in_channels):
        identity = T.identity_kernel(in_channels, 1, self.groups, variables["params"]["bn"]["scale"].dtype)
        return _fold(identity, variables["params"]["bn"], variables["batch_stats"]["bn"])


class _AvgPoolBN(nn.Module):
    """RepNAS ``AvgPoolBN``: 1x1 conv -> BN-and-pad(1) -> 3x3 avg pool (pad 0) -> BN."""
    features: int
    strides: int
    groups: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train):
        x = ConvBN(self.features, 1, 1, 0, self.groups, bn_pad=1, dtype=self.dtype, name="conv1")(x, train)
        x = _avg_pool(x, 3, self.strides, 0)
        return batch_norm(self.dtype, "bn2")(x, use_running_average=not train)

    def fuse(self, variables, in_channels):
        p, s = variables["params"], variables["batch_stats"]
        first = _fold_conv_bn(p["conv1"], s["conv1"])
        avg = _fold(T.avg_pool_kernel(self.features, 3, self.groups, first[0].dtype), p["bn2"], s["bn2"])
        return T.merge_1x1_kxk(*first, *avg, self.groups)


class _Conv1x1Conv3x3(nn.Module):
    """RepNAS ``Conv_1x1_3x3``: identity-based 1x1 -> BN-and-pad(1) -> 3x3 conv-BN with
    padding 0; at stride 2 only the 3x3 conv-BN (padding 1)."""
    features: int
    strides: int
    groups: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train):
        if self.strides == 1:
            x = _IdentityBased1x1(self.groups, self.dtype, name="conv1")(x)
            x = BNAndPad(1, self.dtype, name="bn1")(x, train)
        return ConvBN(self.features, 3, self.strides, 0 if self.strides == 1 else 1, self.groups,
                      dtype=self.dtype, name="conv2")(x, train)

    def fuse(self, variables, in_channels):
        p, s = variables["params"], variables["batch_stats"]
        second = _fold_conv_bn(p["conv2"], s["conv2"])
        if "conv1" not in p:
            return second
        first = T.identity_based(p["conv1"]["kernel"], self.groups)
        return T.merge_1x1_kxk(*_fold(first, p["bn1"], s["bn1"]), *second, self.groups)
