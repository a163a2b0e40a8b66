"""PyTorch ``state_dict`` <-> Flax variables ``{'params', 'batch_stats'}``.

Names and layouts follow ``nas_jax.interop.names`` (OIHW <-> HWIO, BN running statistics
<-> ``batch_stats``, ``stage1.0`` <-> ``stage1_0``). torch is optional: it is imported
only to read a ``.pth``/``.pt`` file or to return torch tensors.
"""
from __future__ import annotations

import fnmatch
import os
from typing import Dict, Iterable, Mapping, Optional, Tuple

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from nas_jax.interop import names

CHECKPOINT_WRAPPER_KEYS = ("state_dict", "model")
DATA_PARALLEL_PREFIX = "module."
NPZ_STATE_DICT_PREFIX = "sd/"
VARIABLE_COLLECTIONS = ("params", "batch_stats")


class StateDictMismatchError(ValueError):
    """A state_dict that does not fit the Flax variables, with every problem at once.

    missing: Flax paths (``"params/stage1_0/conv1/conv/kernel"``) that no tensor filled;
    unexpected: PyTorch names that have no place in the variables;
    misshaped: ``(torch name, torch shape, flax path, expected flax shape)``.
    """

    def __init__(self, missing=(), unexpected=(), misshaped=(), torch_name=None):
        """missing: Flax paths as tuples; unexpected: names; misshaped: 4-tuples as above;
        torch_name: maps a Flax path to the PyTorch name expected there (default: the
        zoo's own naming)."""
        self.missing = tuple("/".join(path) for path in missing)
        self.unexpected = tuple(unexpected)
        self.misshaped = tuple(misshaped)
        self.missing_paths = tuple(tuple(path) for path in missing)
        torch_name = torch_name or _expected_torch_name
        lines = [f"state_dict does not match the Flax variables: {len(self.missing)} missing, "
                 f"{len(self.unexpected)} unexpected, {len(self.misshaped)} misshaped"]
        lines += [f"  missing: {'/'.join(path)} ({torch_name(path)})" for path in missing]
        lines += [f"  unexpected: {name}" for name in self.unexpected]
        lines += [f"  misshaped: {name} {tuple(shape)} -> {path} needs {tuple(expected)}"
                  for name, shape, path, expected in self.misshaped]
        super().__init__("\n".join(lines))


def _expected_torch_name(path) -> str:
    try:
        return f"PyTorch name {names.flax_path_to_torch_name(tuple(path))}"
    except ValueError as err:
        return str(err)


def _import_torch():
    try:
        import torch
    except ImportError as err:
        raise ImportError("reading or writing PyTorch tensors needs torch: pip install nas_jax[torch]") from err
    return torch


def _to_float32(name: str, value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().float().numpy()
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"state_dict entry {name!r} is not a tensor (dtype {array.dtype})")
    return array.astype(np.float32)


def _unwrap_checkpoint(mapping: Mapping) -> Mapping:
    """The state_dict inside a training checkpoint, without DataParallel's ``module.`` prefix."""
    for key in CHECKPOINT_WRAPPER_KEYS:
        if isinstance(mapping.get(key), Mapping):
            mapping = mapping[key]
            break
    if mapping and all(k.startswith(DATA_PARALLEL_PREFIX) for k in mapping):
        mapping = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in mapping.items()}
    return mapping


def _read_file(path: str) -> Mapping:
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        if any(k.startswith(NPZ_STATE_DICT_PREFIX) for k in arrays):
            return {k[len(NPZ_STATE_DICT_PREFIX):]: v for k, v in arrays.items()
                    if k.startswith(NPZ_STATE_DICT_PREFIX)}
        return arrays
    if suffix in (".pth", ".pt"):
        return _import_torch().load(path, map_location="cpu", weights_only=True)
    raise ValueError(f"cannot read a state_dict from {path!r}: expected .pth, .pt or .npz")


def load_state_dict(path_or_mapping) -> dict:
    """``{PyTorch name: float32 numpy array}`` from a ``.pth``/``.pt`` file, an ``.npz``
    (keys under ``sd/`` when it has any, e.g. a golden parity file) or a mapping.

    A checkpoint that wraps the state_dict under ``state_dict`` or ``model`` is unwrapped,
    and a ``module.`` prefix on every key (``nn.DataParallel``) is removed. Layouts are
    PyTorch's, unchanged.
    """
    if isinstance(path_or_mapping, (str, os.PathLike)):
        mapping = _read_file(os.fspath(path_or_mapping))
    elif isinstance(path_or_mapping, Mapping):
        mapping = path_or_mapping
    else:
        raise TypeError(f"expected a file path or a mapping, got {type(path_or_mapping).__name__}")
    return {name: _to_float32(name, value) for name, value in _unwrap_checkpoint(mapping).items()}


def split_repnas_supernet(state_dict) -> Tuple[dict, Optional[np.ndarray]]:
    """``(state_dict, alphas)`` of an official RepNAS supernet (or a single ``MixedOp``).

    Removes the architecture parameters ``alphas`` (``[num_layers, 6]``, returned; ``None``
    when absent) and the unused weight-sharing conv of every MixedOp, ``P.conv.conv.*`` and
    ``P.conv.bn.*`` where ``P`` (possibly empty) is a module that has ``P._ops.*`` children.
    The primitives' own ``P._ops.k.conv.*`` are kept.
    """
    state_dict = load_state_dict(state_dict)
    alphas = state_dict.get("alphas")
    mixed_ops = {tuple(parts[:parts.index("_ops")])
                 for parts in (k.split(".") for k in state_dict) if "_ops" in parts}

    def is_sharing_conv(name):
        parts = name.split(".")
        return any(tuple(parts[:len(p)]) == p and parts[len(p):len(p) + 2] in (["conv", "conv"], ["conv", "bn"])
                   for p in mixed_ops)

    kept = {k: v for k, v in state_dict.items() if k != "alphas" and not is_sharing_conv(k)}
    return kept, alphas


def flax_tensors(state_dict: Mapping[str, np.ndarray]) -> Dict[str, Tuple[tuple, np.ndarray]]:
    """``{PyTorch name: (Flax path, Flax-layout array)}`` of every tensor of a state_dict
    that has a Flax counterpart (a module is a BatchNorm when it has a ``running_mean``)."""
    batch_norms = {names.split_torch_name(k)[0] for k in state_dict
                   if names.split_torch_name(k)[1] == "running_mean"}
    converted = {name: names.torch_tensor_to_flax(name, value, names.split_torch_name(name)[0] in batch_norms)
                 for name, value in state_dict.items()}
    return {name: c for name, c in converted.items() if c is not None}


def torch_to_flax(state_dict, reference_variables, *, ignore: Iterable[str] = ()) -> dict:
    """Flax variables with the structure of ``reference_variables``, filled from a state_dict.

    state_dict: anything ``load_state_dict`` reads (PyTorch names and layouts).
    reference_variables: e.g. ``model.init(...)`` or ``jax.eval_shape(model.init, ...)``;
      only its ``params`` and ``batch_stats`` collections are filled (other collections,
      e.g. ``branch_weights``, are not part of a state_dict and are left out). Leaves take
      the reference's dtype.
    ignore: ``fnmatch`` patterns of PyTorch names to drop on purpose (``*`` also matches
      dots), e.g. ``("alphas",)``.

    Raises ``StateDictMismatchError`` listing every missing, unexpected and misshaped tensor.
    """
    state_dict = load_state_dict(state_dict)
    ignore = tuple(ignore)
    expected = {}
    for collection in VARIABLE_COLLECTIONS:
        if collection in reference_variables:
            flat = traverse_util.flatten_dict(reference_variables[collection])
            expected.update({(collection,) + path: leaf for path, leaf in flat.items()})
    filled, unexpected, misshaped = {}, [], []
    for name, (path, array) in flax_tensors(state_dict).items():
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in ignore):
            continue
        value = state_dict[name]
        if path not in expected or path in filled:
            unexpected.append(name)
        elif array.shape != tuple(expected[path].shape):
            misshaped.append((name, value.shape, "/".join(path), tuple(expected[path].shape)))
            filled[path] = None
        else:
            filled[path] = jnp.asarray(array, dtype=expected[path].dtype)
    missing = [path for path in expected if path not in filled]
    if missing or unexpected or misshaped:
        raise StateDictMismatchError(missing, unexpected, misshaped)
    by_collection = {}
    for path in expected:
        by_collection.setdefault(path[0], {})[path[1:]] = filled[path]
    return {c: traverse_util.unflatten_dict(flat) for c, flat in by_collection.items()}


def flax_to_torch(variables, *, as_torch: bool = False) -> dict:
    """``{PyTorch name: tensor}`` of Flax variables (``params`` and optional ``batch_stats``).

    Made for a deploy network (``path/conv/kernel`` -> ``path.conv.weight``, HWIO -> OIHW,
    linear kernel ``[in, out]`` -> ``[out, in]``), it also maps BatchNorms back to
    ``weight, bias, running_mean, running_var``. Values are numpy arrays, or torch tensors
    when ``as_torch``. The inverse of ``torch_to_flax``.
    """
    state_dict = {}
    for collection, tree in variables.items():
        for path, value in traverse_util.flatten_dict(tree).items():
            name, array = names.flax_tensor_to_torch((collection,) + path, np.asarray(value))
            if name in state_dict:
                raise ValueError(f"two Flax variables map to the PyTorch name {name!r}")
            state_dict[name] = array
    if as_torch:
        torch = _import_torch()
        return {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}  # a writable copy
    return state_dict
