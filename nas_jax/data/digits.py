"""scikit-learn's handwritten digits (1,797 images of 8x8, 10 classes, shipped inside
scikit-learn): the embedded dataset that needs no download.

A fixed stratified split, 60/20/20 (1,078 / 359 / 360 images) with seed 0: ``train``,
``validation``, ``test``. Images are upscaled 4x (nearest) to 32x32, repeated to 3
channels, scaled to [0, 1] and normalised with the training split's mean and std.
Training augmentation (optional): a random shift of up to 2 pixels.
"""
from __future__ import annotations

import functools
from typing import Dict

import numpy as np

from nas_jax.data.pipeline import ArrayPipeline
from nas_jax.data.transforms import normalize, pad_random_crop

SPLITS = ("train", "validation", "test")
SPLIT_SEED = 0
UPSCALE = 4
SHIFT = 2


@functools.lru_cache(maxsize=1)
def split_indices() -> Dict[str, np.ndarray]:
    """``{split: sorted indices into load_digits()}``: stratified, disjoint, fixed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    index = np.arange(len(labels))
    train, rest = train_test_split(index, test_size=0.4, stratify=labels, random_state=SPLIT_SEED)
    val, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=SPLIT_SEED)
    return {"train": np.sort(train), "validation": np.sort(val), "test": np.sort(test)}


@functools.lru_cache(maxsize=1)
def _images_and_labels():
    """float32 [1797, 32, 32, 3] in [0, 1] and int32 [1797]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    images = images.repeat(UPSCALE, axis=1).repeat(UPSCALE, axis=2)
    return np.repeat(images[..., None], 3, axis=-1), digits.target.astype(np.int32)


def digits_pipeline(split: str, augment: bool = True) -> ArrayPipeline:
    if split not in SPLITS:
        raise ValueError(f"digits has splits {SPLITS}, not {split!r}")
    images, labels = _images_and_labels()
    train_images = images[split_indices()["train"]]
    mean, std = float(train_images.mean()), float(train_images.std())
    norm = functools.partial(normalize, mean=mean, std=std, max_value=1.0)

    def train_transform(batch, rng):
        if augment:
            batch = np.stack([pad_random_crop(im, SHIFT, rng) for im in batch])
        return norm(batch)

    idx = split_indices()[split]
    return ArrayPipeline("digits", split, images[idx], labels[idx], 10, train_transform, norm)
