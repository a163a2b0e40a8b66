"""ImageNet-2012 and CIFAR-10/100 from a prepared local TFDS ``data_dir``, read with
``tfds.data_source`` (random access to ArrayRecord files) and ``grain``: no TensorFlow at
run time. Decoding and augmentation run in numpy/PIL inside grain transforms.

ImageNet: train = random-resized crop to ``image_size`` (224) + flip; eval = resize to
``image_size / 0.875`` (256) + central crop. CIFAR: train = pad 4 + random crop + flip;
eval = the image. Both then normalise with the dataset's mean and std.

Preparing a dataset needs TensorFlow once, on any machine, in the ArrayRecord format:
``tfds build cifar10 --data_dir=D --file_format=array_record`` (ImageNet also needs
``--manual_dir`` with the downloaded tar files). Tests use ``tfds.testing.mock_data``,
which works without TensorFlow (its default policy generates the random examples from
the builder's feature spec, in numpy).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Iterator, Tuple

import grain
import jax
import numpy as np

from nas_jax.data import transforms as T
from nas_jax.data.pipeline import Batch, BatchIterator, Pipeline, local_batch_size, pad_batch


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    num_classes: int
    image_size: int
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    crop: str  # 'inception' (random-resized crop) or 'pad' (pad 4 + random crop)
    build_hint: str


TFDS_DATASETS = {
    "cifar10": TfdsSpec(10, 32, T.CIFAR_MEAN, T.CIFAR_STD, "pad",
                        "tfds build cifar10 --data_dir={d} --file_format=array_record"),
    "cifar100": TfdsSpec(100, 32, T.CIFAR_MEAN, T.CIFAR_STD, "pad",
                         "tfds build cifar100 --data_dir={d} --file_format=array_record"),
    "imagenet2012": TfdsSpec(1000, 224, T.IMAGENET_MEAN, T.IMAGENET_STD, "inception",
                             "tfds build imagenet2012 --data_dir={d} --manual_dir=DIR_WITH_ILSVRC2012_TARS "
                             "--file_format=array_record"),
}
CIFAR_PAD = 4


class _TrainTransform(grain.transforms.RandomMap):
    def __init__(self, spec: TfdsSpec, image_size: int):
        self.spec, self.image_size = spec, image_size

    def random_map(self, element, rng: np.random.Generator):
        image = element["image"]
        if self.spec.crop == "inception":
            image = T.random_resized_crop(image, self.image_size, rng)
        else:
            image = T.pad_random_crop(T.as_rgb(image), CIFAR_PAD, rng)
        image = T.random_flip(image, rng)
        return {"image": T.normalize(image, self.spec.mean, self.spec.std),
                "label": np.int32(element["label"])}


class _EvalTransform(grain.transforms.Map):
    def __init__(self, spec: TfdsSpec, image_size: int):
        self.spec, self.image_size = spec, image_size

    def map(self, element):
        image = element["image"]
        if self.spec.crop == "inception":
            image = T.resize_center_crop(image, self.image_size)
        return {"image": T.normalize(T.as_rgb(image), self.spec.mean, self.spec.std),
                "label": np.int32(element["label"])}


def open_source(name: str, split: str, data_dir: str):
    """The TFDS random-access source, or a ``FileNotFoundError`` saying how to build it."""
    import tensorflow_datasets as tfds

    hint = TFDS_DATASETS[name].build_hint.format(d=data_dir or "DATA_DIR")
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
    except Exception as e:  # tfds raises assorted types for a missing / TFRecord-only dataset
        raise FileNotFoundError(
            f"TFDS dataset {name!r} split {split!r} is not prepared in data_dir={data_dir!r} "
            f"(needs the ArrayRecord format). Prepare it once with: {hint}\n({type(e).__name__}: {e})") from e
    if len(source) == 0:
        raise ValueError(f"TFDS dataset {name!r} split {split!r} in {data_dir!r} is empty")
    return source


class _GrainIterator(BatchIterator):
    def __init__(self, loader: grain.DataLoader):
        self._it = iter(loader)

    def __next__(self) -> Batch:
        return next(self._it)

    def get_state(self) -> dict:
        return json.loads(self._it.get_state())

    def set_state(self, state: dict) -> None:
        self._it.set_state(json.dumps(state, indent=4).encode())


class TfdsPipeline(Pipeline):
    def __init__(self, name: str, split: str, data_dir: str, image_size: int = 0, num_workers: int = 0):
        if name not in TFDS_DATASETS:
            raise ValueError(f"unknown TFDS dataset {name!r}; supported: {sorted(TFDS_DATASETS)}")
        self.spec = TFDS_DATASETS[name]
        self.name, self.split, self.num_workers = name, split, num_workers
        self.source = open_source(name, split, data_dir)
        self.num_examples, self.num_classes = len(self.source), self.spec.num_classes
        size = image_size or self.spec.image_size
        if self.spec.crop == "pad" and size != self.spec.image_size:
            raise ValueError(f"{name} images are {self.spec.image_size}x{self.spec.image_size}; "
                             f"image_size={size} is not supported")
        self.image_shape = (size, size, 3)

    def train_batches(self, batch_size: int, seed: int) -> BatchIterator:
        """grain shuffles and loads each process's own shard (``ShardByJaxProcess``: disjoint,
        the remainder dropped), epoch after epoch."""
        if self.num_examples < batch_size:
            raise ValueError(f"batch size {batch_size} exceeds the {self.num_examples} examples of "
                             f"{self.name}/{self.split}")
        sampler = grain.samplers.IndexSampler(
            self.num_examples, shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=True),
            shuffle=True, num_epochs=None, seed=seed)
        operations = [_TrainTransform(self.spec, self.image_shape[0]),
                      grain.transforms.Batch(local_batch_size(batch_size), drop_remainder=True)]
        return _GrainIterator(grain.DataLoader(data_source=self.source, sampler=sampler, operations=operations,
                                               worker_count=self.num_workers))

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """Global batch ``k`` holds examples ``k * batch_size ...`` in order; process ``r``
        reads slice ``r`` of it. Every process yields the same number of batches (each step
        is a collective) and every example is counted once, for any number of processes
        (grain's per-process shards would drop the remainder and differ in length)."""
        local, rank = local_batch_size(batch_size), jax.process_index()
        transform = _EvalTransform(self.spec, self.image_shape[0])
        empty = {"image": np.zeros((0,) + self.image_shape, np.float32), "label": np.zeros((0,), np.int32)}
        for start in range(0, self.num_examples, batch_size):
            own = range(start, min(start + batch_size, self.num_examples))[rank * local:(rank + 1) * local]
            elements = [transform.map(self.source[i]) for i in own]
            batch = {k: np.stack([e[k] for e in elements]) for k in empty} if elements else empty
            yield pad_batch(batch, local)
