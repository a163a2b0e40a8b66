"""Image transforms in numpy/PIL, one image at a time: ``uint8 [H, W, 3]`` in.

Train transforms take a ``numpy.random.Generator`` so a pipeline is reproducible for a
seed. ``normalize`` is the last step of every pipeline and gives ``float32 [H, W, 3]``.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10) -> np.ndarray:
    """Inception-style crop (torchvision's ``RandomResizedCrop``): a random area fraction
    in ``scale`` and aspect ratio in ``ratio``, resized to ``size x size``; after
    ``attempts`` misses, the central crop of the largest allowed aspect ratio."""
    image = as_rgb(image)
    h, w = image.shape[:2]
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            return _resize(np.ascontiguousarray(image[top:top + ch, left:left + cw]), size, size)
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
    return _resize(np.ascontiguousarray(image[top:top + ch, left:left + cw]), size, size)


def resize_center_crop(image: np.ndarray, size: int, crop_fraction: float = 0.875) -> np.ndarray:
    """Resize the shorter side to ``round(size / crop_fraction)`` (256 for 224), then
    take the central ``size x size`` crop."""
    image = as_rgb(image)
    h, w = image.shape[:2]
    short = int(round(size / crop_fraction))
    nh, nw = (short, max(size, round(w * short / h))) if h <= w else (max(size, round(h * short / w)), short)
    image = _resize(image, nh, nw)
    top, left = (nh - size) // 2, (nw - size) // 2
    return image[top:top + size, left:left + size]


def pad_random_crop(image: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-pad ``pad`` pixels on each side, then a random crop of the original size."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    top, left = rng.integers(0, 2 * pad + 1, size=2)
    return padded[top:top + h, left:left + w]


def random_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal flip with probability 1/2."""
    return image[:, ::-1] if rng.random() < 0.5 else image


def normalize(image: np.ndarray, mean, std, max_value: float = 255.0) -> np.ndarray:
    """``(image / max_value - mean) / std`` as float32 ``[H, W, C]``."""
    image = image.astype(np.float32) / max_value
    return (image - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
