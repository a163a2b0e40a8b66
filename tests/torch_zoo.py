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

import timm  # noqa: E402
import torchvision  # noqa: E402

__all__ = ["timm", "torchvision", "torch"]
