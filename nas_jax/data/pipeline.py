"""The batch pipeline interface shared by every dataset.

A batch is a dict of numpy arrays holding this process's slice of the global batch:
``{'image': float32 [B, H, W, 3], 'label': int32 [B]}`` (``B = global batch /
jax.process_count()``; on one host the whole global batch). Evaluation batches also
carry ``'mask': float32 [B]``, 1 for real examples and 0 for the padding that fills the
last batch, so that every example is counted exactly once.

Training iterators are infinite (epoch after epoch, a new order each epoch, the
remainder dropped), fixed for a seed, and resumable: ``get_state()`` returns a JSON
dict that ``set_state`` takes back, after which the same batches follow.
"""
from __future__ import annotations

import abc
from typing import Callable, Dict, Iterator, Optional, Tuple

import jax
import numpy as np

Batch = Dict[str, np.ndarray]


class BatchIterator(abc.ABC):
    """An infinite, resumable iterator of training batches."""

    def __iter__(self):
        return self

    @abc.abstractmethod
    def __next__(self) -> Batch: ...

    @abc.abstractmethod
    def get_state(self) -> dict:
        """A JSON-serialisable position: the batches after it are the ones to come."""

    @abc.abstractmethod
    def set_state(self, state: dict) -> None: ...


class Pipeline(abc.ABC):
    """One split of one dataset: sizes, and the two ways of reading it."""

    name: str
    split: str
    num_examples: int
    num_classes: int
    image_shape: Tuple[int, int, int]

    @abc.abstractmethod
    def train_batches(self, batch_size: int, seed: int) -> BatchIterator:
        """Shuffled, augmented batches of global size ``batch_size``, remainder dropped."""

    @abc.abstractmethod
    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """One pass in a fixed order, no augmentation, the last batch padded (``mask``)."""


def local_batch_size(batch_size: int) -> int:
    """This process's share of a global batch; the global batch must split evenly."""
    processes = jax.process_count()
    if batch_size <= 0 or batch_size % processes:
        raise ValueError(f"batch size {batch_size} must be a positive multiple of the "
                         f"process count {processes}")
    return batch_size // processes


def pad_batch(batch: Batch, size: int) -> Batch:
    """``batch`` padded with zeros to ``size`` examples, with a ``mask`` of the real ones."""
    n = len(batch["label"])
    out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
    out["mask"] = (np.arange(size) < n).astype(np.float32)
    return out


class ArrayPipeline(Pipeline):
    """A split held in memory: ``images [N, H, W, C]`` (any dtype the transforms take) and
    ``labels [N]``. ``train_transform(images, rng)`` and ``eval_transform(images)`` map a
    batch of stored images to normalised float32 images."""

    def __init__(self, name: str, split: str, images: np.ndarray, labels: np.ndarray, num_classes: int,
                 train_transform: Callable[[np.ndarray, np.random.Generator], np.ndarray],
                 eval_transform: Callable[[np.ndarray], np.ndarray]):
        if len(images) == 0:
            raise ValueError(f"dataset {name!r} split {split!r} is empty")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.name, self.split = name, split
        self.images, self.labels = images, labels.astype(np.int32)
        self.num_examples, self.num_classes = len(images), num_classes
        self.image_shape = tuple(eval_transform(images[:1]).shape[1:])
        self._train_transform, self._eval_transform = train_transform, eval_transform

    def train_batches(self, batch_size: int, seed: int) -> BatchIterator:
        return _ArrayIterator(self, batch_size, seed)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        local = local_batch_size(batch_size)
        rank = jax.process_index()
        for start in range(0, self.num_examples, batch_size):
            idx = np.arange(start, min(start + batch_size, self.num_examples))[rank * local:(rank + 1) * local]
            batch = {"image": self._eval_transform(self.images[idx]), "label": self.labels[idx]}
            yield pad_batch(batch, local)


class _ArrayIterator(BatchIterator):
    """Epoch ``e`` visits ``permutation(seed, e)``, process ``r`` of ``P`` taking slice ``r``
    of each global batch; the state is ``(epoch, batch index)``."""

    def __init__(self, pipeline: ArrayPipeline, batch_size: int, seed: int):
        self._p, self._seed = pipeline, seed
        self._batch_size, self._local = batch_size, local_batch_size(batch_size)
        self._per_epoch = pipeline.num_examples // batch_size
        if self._per_epoch == 0:
            raise ValueError(f"batch size {batch_size} exceeds the {pipeline.num_examples} examples of "
                             f"{pipeline.name}/{pipeline.split}")
        self._epoch, self._index = 0, 0
        self._order: Optional[np.ndarray] = None

    def __next__(self) -> Batch:
        if self._index == self._per_epoch:
            self._epoch, self._index, self._order = self._epoch + 1, 0, None
        if self._order is None:
            self._order = np.random.default_rng([self._seed, self._epoch]).permutation(self._p.num_examples)
        start = self._index * self._batch_size + jax.process_index() * self._local
        idx = self._order[start:start + self._local]
        # each example's augmentation is drawn from its own position in the epoch, so a job
        # on any number of processes sees the same global batch
        images = np.concatenate([
            self._p._train_transform(self._p.images[i:i + 1], np.random.default_rng([self._seed, self._epoch, p]))
            for p, i in enumerate(idx, start)])
        self._index += 1
        return {"image": images, "label": self._p.labels[idx]}

    def get_state(self) -> dict:
        return {"epoch": self._epoch, "batch": self._index}

    def set_state(self, state: dict) -> None:
        self._epoch, self._index, self._order = int(state["epoch"]), int(state["batch"]), None
