"""Tests of the datasets: pcl_tf.catalogue (names), pcl_tf.data (the pipeline on TFDS mock data),
pcl_tf.prepare (offline preparation) and pcl-data."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pcl_tf import catalogue, data, prepare

DEBIAN_FMNIST = "/usr/share/datasets/fashion-mnist"
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
needs_debian_fmnist = pytest.mark.skipif(
    not all(os.path.isfile(os.path.join(DEBIAN_FMNIST, f)) for f in IDX_FILES),
    reason=f"no Fashion-MNIST IDX files in {DEBIAN_FMNIST} (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(autouse=True)
def _contain_tfds_temp_dirs(tmp_path_factory, monkeypatch):
    """TFDS leaves an empty ``tempfile.mkdtemp("tfds")`` behind for every builder it creates for an
    unprepared dataset (``DatasetInfo.initialize_from_bucket``), which mock data always is: keep
    them in pytest's temporary directory instead of /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tempfiles")))


def parse_idx(path: str) -> np.ndarray:
    """Parses a gzipped IDX file the way keras.datasets.fashion_mnist.load_data() does."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if path.endswith(IDX_FILES[0][5:]):  # ...-images-idx3-ubyte.gz
        return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    return np.frombuffer(raw, np.uint8, offset=8)


def tfds_order(split: str, n: int) -> list:
    """The order in which TFDS writes (and reads) examples generated with keys 0..n-1.

    TFDS's writer sorts examples by a salted hash of their key (salt: the split name); TFDS's
    MNIST builders key each example by its index in the IDX file.  So split[i] of any TFDS copy
    (downloaded or prepared offline) is IDX example tfds_order(split, n)[i], not example i.
    """
    from tensorflow_datasets.core import hashing

    hasher = hashing.Hasher(split)
    return sorted(range(n), key=hasher.hash_key)


def collect(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


# ---------------------------------------------------------------------------------------------
# Names and facts.


def test_names_aliases_and_facts():
    assert catalogue.NAMES == ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
    for alias in ("fmnist", "fashion-mnist", "fashion_mnist", "Fashion-MNIST"):
        assert catalogue.info(alias) is catalogue.info("fashion_mnist")
    assert catalogue.info("svhn").tfds_name == "svhn_cropped"
    assert catalogue.info("svhn_cropped").name == "svhn"
    for name in catalogue.NAMES:
        i = catalogue.info(name)
        assert len(i.class_names) == i.num_classes == len(set(i.class_names))
        assert len(i.mean) == len(i.std) == i.image_shape[-1]
        assert all(0 < m < 1 for m in i.mean) and all(0 < s < 1 for s in i.std)
    assert catalogue.info("fmnist").mean == (0.2860,) and catalogue.info("fmnist").std == (0.3530,)
    assert catalogue.info("cifar100").class_names == tuple(sorted(catalogue.info("cifar100").class_names))
    # Augmentation: CIFAR crop + flip, SVHN crop only (digits), MNIST-likes none.
    assert (catalogue.info("cifar10").crop_padding, catalogue.info("cifar10").random_flip) == (4, True)
    assert (catalogue.info("cifar100").crop_padding, catalogue.info("cifar100").random_flip) == (4, True)
    assert (catalogue.info("svhn").crop_padding, catalogue.info("svhn").random_flip) == (4, False)
    assert not catalogue.info("mnist").has_augmentation
    assert not catalogue.info("fmnist").has_augmentation
    with pytest.raises(Exception):
        catalogue.info("mnist").num_classes = 3  # frozen


def test_unknown_name_lists_valid_names():
    with pytest.raises(catalogue.DatasetError) as e:
        catalogue.info("imagenet")
    assert isinstance(e.value, ValueError)
    msg = str(e.value)
    assert "\n" not in msg and "imagenet" in msg
    for name in ("mnist", "fashion_mnist", "fmnist", "cifar10", "cifar100", "svhn"):
        assert name in msg


def test_bad_arguments_raise_before_any_preparation(tmp_path):
    with pytest.raises(catalogue.DatasetError, match="split"):
        data.load("fmnist", "validation", batch_size=8, data_dir=str(tmp_path))
    with pytest.raises(catalogue.DatasetError, match="batch_size"):
        data.load("fmnist", "test", batch_size=0, data_dir=str(tmp_path))
    with pytest.raises(catalogue.DatasetError, match="num_examples"):
        data.load("fmnist", "test", batch_size=8, num_examples=0, data_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# The pipeline, through the real TFDS code path on mock data.


def test_mock_data_is_detected(tmp_path):
    assert not prepare._tfds_is_mocked()
    with tfds.testing.mock_data(num_examples=4):
        assert prepare._tfds_is_mocked()
        # Nothing prepared in an empty data_dir, yet no error and nothing written.
        assert prepare.ensure_prepared("cifar10", str(tmp_path)) == str(tmp_path)
    assert not prepare._tfds_is_mocked()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", catalogue.NAMES)
def test_load_on_mock_data(name, tmp_path):
    i = catalogue.info(name)
    with tfds.testing.mock_data(num_examples=20):
        ds = data.load(name, "train", batch_size=8, data_dir=str(tmp_path))
        batches = list(ds)
        assert [int(x.shape[0]) for x, _ in batches] == [8, 8, 4]
        x, y = collect(ds)
        assert x.shape == (20,) + i.image_shape and x.dtype == np.float32
        assert y.shape == (20,) and y.dtype == np.int32
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
        assert 0 <= y.min() and y.max() < i.num_classes
        spec_x, spec_y = ds.element_spec
        assert spec_x.dtype == tf.float32 and spec_y.dtype == tf.int32
        assert tuple(spec_x.shape[1:]) == i.image_shape

        # num_examples takes the first N; drop_remainder drops the partial batch.
        sub = data.load(name, "test", batch_size=4, num_examples=10, data_dir=str(tmp_path))
        xs, ys = collect(sub)
        assert xs.shape[0] == 10
        np.testing.assert_array_equal(ys, y[:10])
        dropped = data.load(name, "test", batch_size=4, num_examples=10, drop_remainder=True)
        assert [int(b[0].shape[0]) for b in dropped] == [4, 4]

        # Augmentation keeps shape and range; it changes images only where the dataset has it.
        aug = data.load(name, "train", batch_size=8, augment=True, seed=1)
        xa, ya = collect(aug)
        assert xa.shape == x.shape and xa.dtype == np.float32
        assert 0.0 <= xa.min() and xa.max() <= 1.0
        np.testing.assert_array_equal(ya, y)
        if i.has_augmentation:
            assert not np.array_equal(xa, x)
            xa2, _ = collect(data.load(name, "train", batch_size=8, augment=True, seed=1))
            np.testing.assert_array_equal(xa2, xa)  # same seed, same augmentation
        else:
            np.testing.assert_array_equal(xa, x)
    assert not list(tmp_path.iterdir())


def test_more_examples_than_the_split_has_is_named_by_the_callers_name(tmp_path):
    """TFDS's own error for an out-of-range slice names neither the flag nor the split size."""
    with tfds.testing.mock_data(num_examples=20):
        with pytest.raises(catalogue.DatasetError, match=r"--num_examples=10001 is more than the 10000 examples of "
                                                    r"fashion_mnist's test split; give at most 10000"):
            data.load("fashion_mnist", "test", batch_size=8, num_examples=10001, num_examples_name="--num_examples")
        with pytest.raises(catalogue.DatasetError, match="after the first 59000 .* give at most 1000"):
            data.load("fashion_mnist", "train", batch_size=8, num_examples=2000, skip_examples=59000)
        data.load("fashion_mnist", "test", batch_size=8, num_examples=10000)  # exactly all: fine


def test_shuffle_is_seeded_and_reshuffles(tmp_path):
    with tfds.testing.mock_data(num_examples=64):
        plain, _ = collect(data.load("cifar10", "train", batch_size=16))

        def epochs(seed, n=2):
            ds = data.load("cifar10", "train", batch_size=16, shuffle=True, augment=True, seed=seed)
            return [collect(ds)[0] for _ in range(n)]

        a1, a2 = epochs(seed=3)
        b1, b2 = epochs(seed=3)
        (c1,) = epochs(seed=4, n=1)
    np.testing.assert_array_equal(a1, b1)  # reproducible for a seed ...
    np.testing.assert_array_equal(a2, b2)  # ... epoch after epoch
    assert not np.array_equal(a1, a2)  # a new order (and augmentation) every epoch
    assert not np.array_equal(a1, c1)  # another seed, another order
    assert not np.array_equal(a1, plain)

    with tfds.testing.mock_data(num_examples=64):
        s1, l1 = collect(data.load("mnist", "train", batch_size=16, shuffle=True, seed=5))
        s2, l2 = collect(data.load("mnist", "train", batch_size=16, shuffle=True, seed=5))
        p, pl = collect(data.load("mnist", "train", batch_size=16))
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(l1, l2)
    # A permutation of the same examples.
    assert sorted(map(bytes, (s1 * 255).astype(np.uint8))) == sorted(
        map(bytes, (p * 255).astype(np.uint8))
    )


# ---------------------------------------------------------------------------------------------
# Offline preparation of real data.


@pytest.fixture(scope="module")
def fmnist_dir(tmp_path_factory):
    """A data_dir in which real Fashion-MNIST got prepared from the Debian package's files."""
    if not all(os.path.isfile(os.path.join(DEBIAN_FMNIST, f)) for f in IDX_FILES):
        pytest.skip(f"Fashion-MNIST IDX files not in {DEBIAN_FMNIST}")
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    empty_keras = str(tmp_path_factory.mktemp("keras"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_HOME", empty_keras)  # the Debian copy, not a Keras cache, is used
        mp.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tempfiles")))
        assert not prepare.is_prepared("fmnist", data_dir)
        assert prepare.ensure_prepared("fmnist", data_dir) == data_dir
    return data_dir


@needs_debian_fmnist
def test_fmnist_prepared_offline_equals_raw_idx(fmnist_dir):
    assert prepare.is_prepared("fashion_mnist", fmnist_dir)
    # Only the dataset is left behind: the seeded download cache was temporary.
    assert sorted(os.listdir(fmnist_dir)) == ["fashion_mnist"]
    builder = tfds.builder("fashion_mnist", data_dir=fmnist_dir)
    assert builder.info.splits["train"].num_examples == 60000
    assert builder.info.splits["test"].num_examples == 10000

    # The whole test split: the IDX file's pixels and labels, in TFDS's canonical order.
    x_test = parse_idx(os.path.join(DEBIAN_FMNIST, "t10k-images-idx3-ubyte.gz"))
    y_test = parse_idx(os.path.join(DEBIAN_FMNIST, "t10k-labels-idx1-ubyte.gz"))
    x, y = collect(data.load("fmnist", "test", batch_size=1000, data_dir=fmnist_dir))
    assert x.shape == (10000, 28, 28, 1) and y.dtype == np.int32
    order = tfds_order("test", 10000)
    assert order[:3] != [0, 1, 2]  # TFDS's order is not the IDX (= Keras) order ...
    np.testing.assert_array_equal(np.round(x[..., 0] * 255).astype(np.uint8), x_test[order])
    np.testing.assert_array_equal(y, y_test[order])  # ... but a fixed permutation of it.

    x_train = parse_idx(os.path.join(DEBIAN_FMNIST, "train-images-idx3-ubyte.gz"))
    y_train = parse_idx(os.path.join(DEBIAN_FMNIST, "train-labels-idx1-ubyte.gz"))
    x, y = collect(
        data.load("fmnist", "train", batch_size=250, num_examples=500, data_dir=fmnist_dir)
    )
    first = tfds_order("train", 60000)[:500]
    np.testing.assert_array_equal(np.round(x[..., 0] * 255).astype(np.uint8), x_train[first])
    np.testing.assert_array_equal(y, y_train[first])

    # Prepared: a second call returns at once.
    start = time.monotonic()
    assert prepare.ensure_prepared("fashion-mnist", fmnist_dir) == fmnist_dir
    assert time.monotonic() - start < 2


@needs_debian_fmnist
def test_raw_files_of_the_wrong_dataset_are_refused(tmp_path):
    with pytest.raises(catalogue.DatasetError, match="fashion_mnist"):
        prepare.ensure_prepared("mnist", str(tmp_path), raw_dir=DEBIAN_FMNIST)
    assert not prepare.is_prepared("mnist", str(tmp_path))
    with pytest.raises(prepare.DatasetNotFoundError, match="raw_dir"):
        prepare.ensure_prepared("mnist", str(tmp_path), raw_dir=str(tmp_path / "nothing"))


@needs_debian_fmnist
def test_mnist_prepared_offline_from_keras_npz(tmp_path, monkeypatch):
    """The Keras-cache path for MNIST (mnist.npz -> IDX -> seeded TFDS cache).

    No MNIST copy exists offline here, so the npz holds Fashion-MNIST's arrays with MNIST's first
    training labels (which the sanity check looks at).
    """
    rng = np.random.default_rng(0)
    x_train = parse_idx(os.path.join(DEBIAN_FMNIST, "train-images-idx3-ubyte.gz"))
    y_train = parse_idx(os.path.join(DEBIAN_FMNIST, "train-labels-idx1-ubyte.gz")).copy()
    y_train[:8] = (5, 0, 4, 1, 9, 2, 1, 3)
    x_test = rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8)
    y_test = rng.integers(0, 10, (10000,), dtype=np.uint8)
    keras_home = tmp_path / "keras"
    (keras_home / "datasets").mkdir(parents=True)
    np.savez(
        keras_home / "datasets" / "mnist.npz",
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
    )  # fmt: skip
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    data_dir = str(tmp_path / "tfds")
    assert prepare.ensure_prepared("mnist", data_dir) == data_dir
    assert sorted(os.listdir(data_dir)) == ["mnist"]
    x, y = collect(data.load("mnist", "test", batch_size=2500, data_dir=data_dir))
    order = tfds_order("test", 10000)
    np.testing.assert_array_equal(np.round(x[..., 0] * 255).astype(np.uint8), x_test[order])
    np.testing.assert_array_equal(y, y_test[order])
    _, y = collect(data.load("mnist", "train", batch_size=100, num_examples=100, data_dir=data_dir))
    np.testing.assert_array_equal(y, y_train[tfds_order("train", 60000)[:100]])


# ---------------------------------------------------------------------------------------------
# Missing data fails fast, with one helpful line.


def _assert_fast_one_line_error(fn, *fragments):
    start = time.monotonic()
    with pytest.raises(prepare.DatasetNotFoundError) as e:
        fn()
    elapsed = time.monotonic() - start
    assert elapsed < 15, f"took {elapsed:.1f} s to find the data missing"
    msg = str(e.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def test_missing_cifar10_fails_fast(tmp_path):
    _assert_fast_one_line_error(
        lambda: data.load("cifar10", "train", batch_size=8, data_dir=str(tmp_path)),
        str(tmp_path / "cifar10"),
        "tfds build cifar10",
        "--data_dir",
    )


def test_missing_mnist_and_fmnist_say_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(prepare, "_DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "no-debian"))
    _assert_fast_one_line_error(
        lambda: prepare.ensure_prepared("mnist", str(tmp_path)),
        "train-images-idx3-ubyte.gz",
        str(tmp_path / "downloads" / "manual" / "mnist"),
        "mnist.npz",
    )
    _assert_fast_one_line_error(
        lambda: prepare.ensure_prepared("fmnist", str(tmp_path)),
        "apt-get install dataset-fashion-mnist",
        "t10k-labels-idx1-ubyte.gz",
        str(tmp_path / "downloads" / "manual" / "fashion_mnist"),
    )


def test_download_without_network_fails_fast(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    # Never download for real from a test, even on a machine with internet.
    monkeypatch.setattr(socket, "create_connection", no_network)
    _assert_fast_one_line_error(
        lambda: prepare.ensure_prepared("svhn", str(tmp_path), allow_download=True),
        "cannot reach",
    )
    assert not prepare.is_prepared("svhn", str(tmp_path))


# ---------------------------------------------------------------------------------------------
# pcl-data.


def _pcl_data(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "pcl_tf.cli.data", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_cli_unknown_dataset_exits_2_with_one_line():
    proc = _pcl_data("--dataset=imagenet")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pcl-data: error: unknown dataset 'imagenet'")


def test_cli_missing_dataset_exits_2(tmp_path):
    proc = _pcl_data("--dataset=cifar100", f"--data_dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith("pcl-data: error: cifar100")
    assert "Traceback" not in proc.stderr


@needs_debian_fmnist
def test_cli_reports_prepared_dataset(fmnist_dir):
    proc = _pcl_data("--dataset=fmnist", f"--data_dir={fmnist_dir}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    assert os.path.join(fmnist_dir, "fashion_mnist") in lines[0]
    assert "60000 train" in lines[0] and "10000 test" in lines[0]
