"""The real torchvision and timm model classes, importable beside the CPU build of torch.

PyPI's torchvision wheel is built against the CUDA build of torch: its compiled detection
ops (``nms``, ``roi_align``...) cannot load beside the CPU build this project pins, and
``import torchvision`` then fails while registering a fake kernel for ``torchvision::nms``
and ``torchvision::qnms``. The classification models use none of those ops, so the two
schemas are declared here (without kernels) before the import; calling them would fail,
nothing here calls them. timm imports torchvision, so it goes through here too.
"""
import torch

_SCHEMAS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
            "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def _declare_missing_ops():
    if hasattr(torch.ops.torchvision, "nms"):
        return
    try:
        torch.ops.torchvision.nms
    except (AttributeError, RuntimeError):
        library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            library.define(schema)
        _declare_missing_ops.library = library  # keep it alive


_declare_missing_ops()

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torchvision  # noqa: E402


def random_eval(module, seed=0):
    """``module`` with random BatchNorm affine parameters and running statistics, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=generator))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=generator))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=generator))
    return module.eval()


def torch_out(module, x):
    """``module``'s output (numpy) for NHWC images ``x`` (run as NCHW)."""
    with torch.no_grad():
        return module(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())).numpy()


def as_torch(state_dict):
    """A numpy state_dict as writable torch tensors."""
    return {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}


__all__ = ["timm", "torchvision", "torch", "random_eval", "torch_out", "as_torch"]
