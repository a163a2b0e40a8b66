"""PyTorch interop: state_dict import/export (``torch_state_dict``, names in ``names``) and
the parity check against the official implementations (``parity``, ``nas-jax parity``).

torch is optional: only reading ``.pth``/``.pt`` files or returning torch tensors needs it.
"""
from nas_jax.interop.torch_state_dict import (StateDictMismatchError, flax_to_torch, load_state_dict,
                                              split_repnas_supernet, torch_to_flax)

__all__ = ["StateDictMismatchError", "flax_to_torch", "load_state_dict", "split_repnas_supernet",
           "torch_to_flax"]
