"""PyTorch interop: state_dict import/export (``torch_state_dict``, names in ``names``) and
the parity check against the official implementations (``parity``, ``nas-jax parity``),
torchvision and timm checkpoints in and out (``third_party``), ONNX export (``onnx_export``).

torch is optional: only reading ``.pth``/``.pt`` files or returning torch tensors needs it.
"""
from nas_jax.interop.third_party import from_timm, from_torchvision, resize_torch_module, to_timm, to_torchvision
from nas_jax.interop.torch_state_dict import (StateDictMismatchError, flax_to_torch, load_state_dict,
                                              split_repnas_supernet, torch_to_flax)

__all__ = ["from_timm", "from_torchvision", "resize_torch_module", "to_timm", "to_torchvision",
           "StateDictMismatchError", "flax_to_torch", "load_state_dict", "split_repnas_supernet",
           "torch_to_flax"]
