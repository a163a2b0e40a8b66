"""Synthetic data for benchmarks and smoke runs: standard-normal float32 images
``[N, R, R, 3]`` and uniform labels, fixed by a seed (the same for every split)."""
from __future__ import annotations

import numpy as np

from nas_jax.data.pipeline import ArrayPipeline


def synthetic_pipeline(split: str, image_size: int = 32, num_classes: int = 10, num_examples: int = 1024,
                       seed: int = 0) -> ArrayPipeline:
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((num_examples, image_size, image_size, 3), dtype=np.float32)
    labels = rng.integers(0, num_classes, num_examples).astype(np.int32)
    identity = lambda batch, rng=None: batch  # noqa: E731 - the data is already normalised
    return ArrayPipeline("synthetic", split, images, labels, num_classes, identity, identity)
