"""Pure kernel transforms that turn a sum of linear branches into one conv.

Every kernel here is in Flax's HWIO layout: ``kernel[kh, kw, in_per_group, out]``,
where ``in_per_group = in_channels // groups`` and output channel ``o`` belongs to
group ``o // (out // groups)`` (the same grouping as PyTorch). A bias is ``[out]``.
All functions are jit-able, differentiable and keep the dtype of their inputs.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

BN_EPS = 1e-5


def fold_batchnorm(kernel, scale, bias, mean, var, eps: float = BN_EPS):
    """Folds ``BN(conv(x))`` into one conv: returns ``(kernel', bias')``.

    kernel: [kh, kw, in/g, out]; scale, bias, mean, var: [out].
    """
    factor = scale / jnp.sqrt(var + eps)
    return kernel * factor, bias - mean * factor


def pad_to_size(kernel, size: int | Sequence[int]):
    """Zero-pads a [kh, kw, i, o] kernel symmetrically to [K, K, i, o] (or [K1, K2, i, o]).

    A 1x1, 1xK or Kx1 conv with padding ``k // 2`` equals the padded KxK conv with
    padding ``K // 2``, at any stride, when both sizes are odd.
    """
    target = (size, size) if isinstance(size, int) else tuple(size)
    kh, kw = kernel.shape[:2]
    if kh > target[0] or kw > target[1]:
        raise ValueError(f"kernel {kh}x{kw} is larger than the target {target[0]}x{target[1]}")
    ph, pw = (target[0] - kh) // 2, (target[1] - kw) // 2
    return jnp.pad(kernel, ((ph, target[0] - kh - ph), (pw, target[1] - kw - pw), (0, 0), (0, 0)))


def grouped_identity(channels: int, groups: int, dtype=jnp.float32):
    """The [channels // groups, channels] matrix that maps channel c to itself in a grouped conv."""
    if channels % groups:
        raise ValueError(f"{channels} channels do not split into {groups} groups")
    per_group = channels // groups
    eye = np.zeros((per_group, channels), dtype=np.float32)
    eye[np.arange(channels) % per_group, np.arange(channels)] = 1.0
    return jnp.asarray(eye, dtype=dtype)


def identity_kernel(channels: int, size: int, groups: int = 1, dtype=jnp.float32):
    """The [K, K, channels/groups, channels] kernel of the identity map (1 at the centre)."""
    return pad_to_size(grouped_identity(channels, groups, dtype)[None, None], size)


def identity_based(kernel_1x1, groups: int = 1):
    """An identity-based 1x1 kernel [1, 1, C/groups, C]: the stored ``kernel_1x1`` plus the
    identity, the kernel the conv really applies (DBB's ``IdentityBasedConv1x1``)."""
    return kernel_1x1 + identity_kernel(kernel_1x1.shape[-1], 1, groups, kernel_1x1.dtype)


def avg_pool_kernel(channels: int, size: int, groups: int = 1, dtype=jnp.float32):
    """A KxK average pool over each channel as a [K, K, channels/groups, channels] kernel.

    Matches a zero-padded pool that counts the padding (PyTorch's default).
    """
    eye = grouped_identity(channels, groups, dtype) / (size * size)
    return jnp.broadcast_to(eye, (size, size) + eye.shape)


def compose_1x1_kxk(kernel_1x1, kernel_kxk, groups: int = 1):
    """The one [K1, K2, in/g, out] kernel of ``conv_kxk(conv_1x1(x))`` (no biases).

    kernel_1x1: [1, 1, in/g, mid]; kernel_kxk: [K1, K2, mid/g, out]; both with ``groups``
    groups (depthwise included). Exact at the borders when the intermediate map was padded
    with zeros, i.e. the KxK conv's own zero padding moves onto the composed conv.
    """
    in_per_group, mid = kernel_1x1.shape[2:]
    k1, k2, mid_per_group, out = kernel_kxk.shape
    if mid != mid_per_group * groups or out % groups:
        raise ValueError(
            f"cannot merge a 1x1 kernel {kernel_1x1.shape} into a {kernel_kxk.shape} kernel "
            f"with {groups} groups")
    first = kernel_1x1[0, 0].reshape(in_per_group, groups, mid_per_group)
    second = kernel_kxk.reshape(k1, k2, mid_per_group, groups, out // groups)
    return jnp.einsum("igm,hwmgo->hwigo", first, second).reshape(k1, k2, in_per_group, out)


def compose_1x1_avg(kernel_1x1, size: int):
    """The one [K, K, in/g, out] kernel of a 1x1 conv ``kernel_1x1`` [1, 1, in/g, out] then
    a KxK average pool counting zero padding: ``kernel_1x1 / K^2`` at every tap, at any
    grouping (``compose_1x1_kxk`` with ``avg_pool_kernel``, without its dense product)."""
    return jnp.broadcast_to(kernel_1x1 / (size * size), (size, size) + kernel_1x1.shape[2:])


def merge_1x1_kxk(kernel_1x1, bias_1x1, kernel_kxk, bias_kxk, groups: int = 1):
    """Merges ``conv_kxk(conv_1x1(x) + b1) + b2`` into one KxK conv (``compose_1x1_kxk``
    and the biases). Exact at the borders only if the intermediate map was padded with
    ``b1`` (what BN-and-pad does). Returns ([K1, K2, in/g, out], [out]).
    """
    kernel = compose_1x1_kxk(kernel_1x1, kernel_kxk, groups)
    k1, k2, mid_per_group, out = kernel_kxk.shape
    second = kernel_kxk.reshape(k1, k2, mid_per_group, groups, out // groups)
    bias = bias_kxk + jnp.einsum("hwmgo,gm->go", second,
                                 bias_1x1.reshape(groups, mid_per_group)).reshape(out)
    return kernel, bias


def sum_branches(branches):
    """Sums parallel branches given as (kernel, bias) pairs of equal shapes."""
    kernels, biases = zip(*branches)
    return sum(kernels[1:], kernels[0]), sum(biases[1:], biases[0])
