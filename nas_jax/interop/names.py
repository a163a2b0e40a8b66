"""How PyTorch state_dict names and layouts map onto Flax variables, one tensor at a time.

Module paths: a PyTorch path component that is a number is joined to the one before it
with ``_`` (``stage1.0.conv1`` -> ``("stage1_0", "conv1")``, ``_ops.3`` -> ``("_ops_3",)``);
the inverse turns a trailing ``_<digits>`` back into ``.<digits>``. A Python attribute
that itself ends in ``_<digits>`` therefore cannot be told apart from a list index: the
official RepNAS and DBB names have none.

Tensors (``M`` a module path; PyTorch -> Flax):

- ``M.weight`` of a BN -> ``params/M/scale`` ``[C]``;
- ``M.weight`` with ndim >= 2 -> ``params/M/kernel``: conv OIHW ``[out, in/g, kh, kw]`` ->
  HWIO ``[kh, kw, in/g, out]`` (depthwise ``[C, 1, kh, kw]`` -> ``[kh, kw, 1, C]``),
  linear ``[out, in]`` -> ``[in, out]``;
- ``M.weight`` with ndim < 2 -> ``params/M/scale`` (a norm without running statistics);
- ``M.bias`` -> ``params/M/bias``; ``M.running_mean`` / ``M.running_var`` ->
  ``batch_stats/M/mean`` / ``batch_stats/M/var``; ``M.num_batches_tracked`` is dropped;
- any other ``M.<name>`` -> ``params/M/<name>``, unchanged.

A module is a BN when the state_dict also holds its ``running_mean``.
"""
from __future__ import annotations

import re
from typing import Optional, Tuple

import numpy as np

FlaxPath = Tuple[str, ...]  # (collection, module..., leaf), e.g. ("params", "stage1_0", "conv1", "conv", "kernel")

DROPPED_LEAVES = ("num_batches_tracked",)
_BATCH_STATS_LEAVES = {"running_mean": "mean", "running_var": "var"}
_TRAILING_INDEX = re.compile(r"^(.+?)((?:_\d+)+)$")


def torch_module_to_flax(module_name: str) -> Tuple[str, ...]:
    """``"stage1.0.conv1"`` -> ``("stage1_0", "conv1")``; ``""`` -> ``()``."""
    path = []
    for part in module_name.split(".") if module_name else ():
        if part.isdigit() and path:
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    return tuple(path)


def flax_module_to_torch(path: Tuple[str, ...]) -> str:
    """``("stage1_0", "conv1")`` -> ``"stage1.0.conv1"`` (the inverse of ``torch_module_to_flax``)."""
    parts = []
    for name in path:
        match = _TRAILING_INDEX.match(name)
        if match:
            parts.append(match.group(1))
            parts.extend(match.group(2)[1:].split("_"))
        else:
            parts.append(name)
    return ".".join(parts)


def split_torch_name(name: str) -> Tuple[str, str]:
    """``"stage1.0.conv1.conv.weight"`` -> ``("stage1.0.conv1.conv", "weight")``."""
    module, _, leaf = name.rpartition(".")
    return module, leaf


def oihw_to_hwio(weight: np.ndarray) -> np.ndarray:
    """A PyTorch conv or linear weight ``[out, in, *spatial]`` as a Flax kernel ``[*spatial, in, out]``."""
    return weight.transpose(tuple(range(2, weight.ndim)) + (1, 0))


def hwio_to_oihw(kernel: np.ndarray) -> np.ndarray:
    """A Flax kernel ``[*spatial, in, out]`` as a PyTorch weight ``[out, in, *spatial]``."""
    n = kernel.ndim
    return kernel.transpose((n - 1, n - 2) + tuple(range(n - 2)))


def torch_tensor_to_flax(name: str, value: np.ndarray, is_batch_norm: bool
                         ) -> Optional[Tuple[FlaxPath, np.ndarray]]:
    """The Flax path and Flax-layout value of one state_dict tensor; ``None`` if it is dropped.

    ``is_batch_norm``: whether the tensor's module is a BatchNorm (has a ``running_mean``).
    """
    module, leaf = split_torch_name(name)
    path = torch_module_to_flax(module)
    if leaf in DROPPED_LEAVES:
        return None
    if leaf in _BATCH_STATS_LEAVES:
        return ("batch_stats",) + path + (_BATCH_STATS_LEAVES[leaf],), value
    if leaf == "weight" and not is_batch_norm and value.ndim >= 2:
        return ("params",) + path + ("kernel",), oihw_to_hwio(value)
    if leaf == "weight":
        return ("params",) + path + ("scale",), value
    return ("params",) + path + (leaf,), value


def flax_path_to_torch_name(path: FlaxPath) -> str:
    """The PyTorch name of the Flax variable at ``path`` (``(collection, module..., leaf)``)."""
    collection, module, leaf = path[0], path[1:-1], path[-1]
    if collection == "batch_stats":
        names = {v: k for k, v in _BATCH_STATS_LEAVES.items()}
        if leaf not in names:
            raise ValueError(f"batch_stats/{'/'.join(path[1:])} has no PyTorch counterpart")
        leaf = names[leaf]
    elif collection == "params":
        leaf = "weight" if leaf in ("kernel", "scale") else leaf
    else:
        raise ValueError(f"collection {collection!r} has no PyTorch counterpart (only params, batch_stats)")
    return ".".join(p for p in (flax_module_to_torch(module), leaf) if p)


def flax_tensor_to_torch(path: FlaxPath, value: np.ndarray) -> Tuple[str, np.ndarray]:
    """The PyTorch name and PyTorch-layout value of the Flax variable at ``path``."""
    if path[0] == "params" and path[-1] == "kernel":
        value = hwio_to_oihw(value)
    return flax_path_to_torch_name(path), value
