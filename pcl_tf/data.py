"""Datasets: names, per-dataset facts, offline preparation and the ``tf.data`` input pipeline.

Everything is read through TensorFlow Datasets (TFDS), so the tests can run every dataset through
the real TFDS code path on ``tfds.testing.mock_data``.  What this module adds on top of TFDS:

* ``info(name)``: the facts a training run needs about a dataset (image shape, classes, the
  standard per-channel mean/std, which train-time augmentation the literature uses for it).
* ``ensure_prepared(name)``: makes sure the TFDS copy exists *without ever making the user wait on
  a dead network*.  Offline, ``tfds.load('mnist')`` retries its downloads for ~200 s before it
  fails; here a missing dataset fails in well under a second with one line saying what to install
  or where to put which files.  MNIST and Fashion-MNIST are prepared offline from local raw files
  when there are some (the Debian package ``dataset-fashion-mnist``, the Keras cache, or a
  directory given by the user), by seeding TFDS's download cache (see ``_prepare_from_idx``).
* ``load(name, split, batch_size=...)``: the batched, prefetched pipeline of
  ``(images float32 in [0, 1] (B, H, W, C), labels int32 (B,))``.  Normalisation by mean/std is
  left to the model, so that attacks work in the [0, 1] pixel space in which epsilons are quoted.
  Examples come in TFDS's order, which for MNIST/Fashion-MNIST is not the order of the IDX files
  (nor of ``keras.datasets``): TFDS writes examples sorted by a hash of their index.

TensorFlow and TFDS are imported on first use, not at import time: ``info()`` and name validation
stay instant and silent (``pcl-data --dataset=typo`` answers before TensorFlow would print its
start-up log lines on stderr).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import inspect
import io
import os
import shutil
import socket
import struct
import tempfile
import urllib.parse
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from absl import logging
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = [
    "NAMES",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetInfo",
    "info",
    "canonical_name",
    "default_data_dir",
    "ensure_prepared",
    "is_prepared",
    "manual_dir",
    "load",
]

SPLITS = ("train", "test")

# Seconds to wait for a TCP connection to a download host before declaring the network down.
_NETWORK_TIMEOUT_S = 3.0

# The four IDX files of MNIST and Fashion-MNIST (same names for both), keyed as TFDS's MNIST
# builder keys them, with the (IDX magic, example count) each must have.
_IDX_FILES: Dict[str, Tuple[str, int, int]] = {
    "train-images-idx3-ubyte.gz": ("train_images", 0x0803, 60000),
    "train-labels-idx1-ubyte.gz": ("train_labels", 0x0801, 60000),
    "t10k-images-idx3-ubyte.gz": ("test_images", 0x0803, 10000),
    "t10k-labels-idx1-ubyte.gz": ("test_labels", 0x0801, 10000),
}

# The first training labels of each IDX dataset: a cheap check that the files given for MNIST are
# not Fashion-MNIST's (same file names, same shapes) or vice versa.
_FIRST_TRAIN_LABELS: Dict[str, Tuple[int, ...]] = {
    "mnist": (5, 0, 4, 1, 9, 2, 1, 3),
    "fashion_mnist": (9, 0, 0, 3, 0, 2, 7, 2),
}

_DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


class DatasetError(ValueError):
    """A dataset name, split or argument is wrong, or the data is not there.

    The message is always one line meant for the user (the CLIs print it as is).
    """


class DatasetNotFoundError(DatasetError):
    """The dataset is not prepared and cannot be prepared from anything on this machine."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a training run needs to know about one dataset.

    Attributes:
      name: canonical name used by pcl_tf (``mnist``, ``fashion_mnist``, ``cifar10``, ...).
      tfds_name: the TFDS builder name.
      image_shape: (height, width, channels).
      num_classes: number of classes; labels are ``0 .. num_classes - 1``.
      class_names: human-readable class names, indexed by label.
      mean, std: standard published per-channel statistics of the training set, in [0, 1] pixel
        units (what ``keras.layers.Normalization`` or the model's input layer should use).
      crop_padding: train-time augmentation pads each side by this many (zero) pixels and crops
        back to ``image_shape`` at a random offset; 0 means no random crop.
      random_flip: train-time augmentation flips images horizontally at random (not for digits).
      train_examples, test_examples: the sizes of the real splits.
    """

    name: str
    tfds_name: str
    image_shape: Tuple[int, int, int]
    num_classes: int
    class_names: Tuple[str, ...]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    crop_padding: int = 0
    random_flip: bool = False
    train_examples: int = 0
    test_examples: int = 0

    @property
    def has_augmentation(self) -> bool:
        """Whether ``load(..., augment=True)`` changes anything for this dataset."""
        return self.crop_padding > 0 or self.random_flip


_DIGITS = tuple(str(i) for i in range(10))

_CIFAR100_FINE_LABELS = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

_INFOS: Dict[str, DatasetInfo] = {
    i.name: i
    for i in (
        DatasetInfo(
            name="mnist",
            tfds_name="mnist",
            image_shape=(28, 28, 1),
            num_classes=10,
            class_names=_DIGITS,
            mean=(0.1307,),
            std=(0.3081,),
            train_examples=60000,
            test_examples=10000,
        ),
        DatasetInfo(
            name="fashion_mnist",
            tfds_name="fashion_mnist",
            image_shape=(28, 28, 1),
            num_classes=10,
            class_names=(
                "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
            ),  # fmt: skip
            mean=(0.2860,),
            std=(0.3530,),
            train_examples=60000,
            test_examples=10000,
        ),
        DatasetInfo(
            name="cifar10",
            tfds_name="cifar10",
            image_shape=(32, 32, 3),
            num_classes=10,
            class_names=(
                "airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck",
            ),  # fmt: skip
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616),
            crop_padding=4,
            random_flip=True,
            train_examples=50000,
            test_examples=10000,
        ),
        DatasetInfo(
            name="cifar100",
            tfds_name="cifar100",
            image_shape=(32, 32, 3),
            num_classes=100,
            class_names=_CIFAR100_FINE_LABELS,
            mean=(0.5071, 0.4865, 0.4409),
            std=(0.2673, 0.2564, 0.2762),
            crop_padding=4,
            random_flip=True,
            train_examples=50000,
            test_examples=10000,
        ),
        DatasetInfo(
            name="svhn",
            tfds_name="svhn_cropped",
            image_shape=(32, 32, 3),
            num_classes=10,
            class_names=_DIGITS,
            mean=(0.4377, 0.4438, 0.4728),
            std=(0.1980, 0.2010, 0.1970),
            # Digits: a flipped 2 or 5 is not a 2 or 5, so crop only.
            crop_padding=4,
            random_flip=False,
            train_examples=73257,
            test_examples=26032,
        ),
    )
}

NAMES: Tuple[str, ...] = tuple(_INFOS)

_ALIASES = {"fmnist": "fashion_mnist", "svhn_cropped": "svhn"}


def canonical_name(name: str) -> str:
    """Returns the canonical name for ``name`` (case-insensitive; ``-`` and ``_`` are equivalent).

    Raises:
      DatasetError: unknown name; the message lists the valid names.
    """
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _INFOS:
        raise DatasetError(
            f"unknown dataset {name!r}; valid names: mnist, fashion_mnist (or fmnist), "
            "cifar10, cifar100, svhn"
        )
    return key


def info(name: str) -> DatasetInfo:
    """Returns the ``DatasetInfo`` of a dataset name or alias (see ``canonical_name``)."""
    return _INFOS[canonical_name(name)]


def default_data_dir() -> str:
    """TFDS's default data directory: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def _resolve_data_dir(data_dir: Optional[str]) -> str:
    if data_dir is None or str(data_dir) == "":
        return default_data_dir()
    data_dir = os.fspath(data_dir)
    return data_dir if "://" in data_dir else os.path.abspath(os.path.expanduser(data_dir))


def _tfds():
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    return tfds


def _tfds_is_mocked() -> bool:
    """Whether ``tfds.testing.mock_data`` (or any other patch) replaced TFDS's preparation.

    ``mock_data`` patches ``DatasetBuilder.download_and_prepare`` with a no-op (and
    ``as_dataset`` with a generator of random examples) while ``builder.is_prepared()`` stays
    False, so preparing or raising "not found" would both be wrong there.  The real method is
    defined in ``tensorflow_datasets.core.dataset_builder``; anything else means somebody patched
    it and owns what "prepared" means, so ``ensure_prepared`` leaves the builder alone.
    """
    tfds = _tfds()
    fn = inspect.getattr_static(tfds.core.DatasetBuilder, "download_and_prepare")
    return getattr(fn, "__module__", None) != "tensorflow_datasets.core.dataset_builder"


def is_prepared(name: str, data_dir: Optional[str] = None) -> bool:
    """Whether the TFDS copy of ``name`` is prepared in ``data_dir`` (no network, no side effect).

    The cheap check of the variant directory's ``dataset_info.json`` comes first so that a missing
    dataset does not make TFDS log a warning about it.
    """
    ds_info = info(name)
    data_dir = _resolve_data_dir(data_dir)
    tfds = _tfds()
    version = str(tfds.builder_cls(ds_info.tfds_name).VERSION)
    variant_dir = os.path.join(data_dir, ds_info.tfds_name, version)
    if "://" not in data_dir and not os.path.exists(os.path.join(variant_dir, "dataset_info.json")):
        return False
    return tfds.builder(ds_info.tfds_name, data_dir=data_dir).is_prepared()


# --------------------------------------------------------------------------------------------
# Raw files for MNIST / Fashion-MNIST.


def _keras_datasets_dir() -> str:
    """Where ``keras.datasets.*.load_data()`` caches its downloads."""
    return os.path.join(
        os.path.expanduser(os.environ.get("KERAS_HOME") or "~/.keras"), "datasets"
    )


def manual_dir(name: str, data_dir: Optional[str] = None) -> str:
    """The directory in which the user may put raw files of ``name`` for offline preparation."""
    return os.path.join(_resolve_data_dir(data_dir), "downloads", "manual", info(name).tfds_name)


@dataclasses.dataclass(frozen=True)
class _RawSource:
    """Local raw files of an IDX dataset: a directory of the four .gz files, or a Keras .npz."""

    location: str
    kind: str  # "idx" or "npz"


def _idx_candidates(name: str, data_dir: str, raw_dir: Optional[str]) -> List[_RawSource]:
    """Where to look for raw files, in order of preference."""
    out = []
    if raw_dir is not None:
        raw_dir = os.path.expanduser(os.fspath(raw_dir))
        if raw_dir.endswith(".npz"):
            return [_RawSource(raw_dir, "npz")]
        return [_RawSource(raw_dir, "idx")]
    out.append(_RawSource(manual_dir(name, data_dir), "idx"))
    keras_dir = _keras_datasets_dir()
    if name == "fashion_mnist":
        out.append(_RawSource(_DEBIAN_FASHION_MNIST_DIR, "idx"))
        out.append(_RawSource(os.path.join(keras_dir, "fashion-mnist"), "idx"))
    else:
        out.append(_RawSource(os.path.join(keras_dir, "mnist.npz"), "npz"))
    return out


def _source_present(src: _RawSource) -> bool:
    if src.kind == "npz":
        return os.path.isfile(src.location)
    return all(os.path.isfile(os.path.join(src.location, f)) for f in _IDX_FILES)


def _check_idx_file(path: str, magic: int, count: int) -> None:
    """Checks the IDX header (magic, count, 28x28) of a gzipped IDX file; reads a few bytes only."""
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(16 if magic == 0x0803 else 8)
    except (OSError, EOFError) as e:
        raise DatasetError(f"{path} is not a readable gzip file ({e})") from None
    want = [magic, count] + ([28, 28] if magic == 0x0803 else [])
    got = list(struct.unpack(f">{len(want)}I", header)) if len(header) == 4 * len(want) else None
    if got != want:
        raise DatasetError(
            f"{path} is not the expected IDX file (header {got}, expected {want})"
        )


def _check_first_labels(name: str, labels_path: str) -> None:
    want = _FIRST_TRAIN_LABELS[name]
    with gzip.open(labels_path, "rb") as f:
        got = tuple(f.read(8 + len(want))[8:])
    if got != want:
        other = [n for n, v in _FIRST_TRAIN_LABELS.items() if v == got]
        hint = f" (these look like {other[0]}'s)" if other else ""
        raise DatasetError(
            f"{labels_path} does not hold {name}'s training labels{hint}: "
            f"first labels {list(got)}, expected {list(want)}"
        )


def _write_idx_gz(path: str, array: np.ndarray) -> None:
    """Writes a uint8 array as a gzipped IDX file (the format TFDS's MNIST builder reads)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(struct.pack(f">{1 + array.ndim}I", magic, *array.shape))
        f.write(array.tobytes())


def _materialise_idx(name: str, src: _RawSource, work_dir: str) -> str:
    """Returns a directory holding the four checked IDX .gz files of ``src``."""
    if src.kind == "npz":
        try:
            with np.load(src.location) as npz:
                arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except (OSError, KeyError, ValueError) as e:
            raise DatasetError(f"{src.location} is not a Keras MNIST .npz file ({e})") from None
        out_dir = os.path.join(work_dir, "idx")
        os.makedirs(out_dir, exist_ok=True)
        for fname, arr in (
            ("train-images-idx3-ubyte.gz", arrays["x_train"]),
            ("train-labels-idx1-ubyte.gz", arrays["y_train"]),
            ("t10k-images-idx3-ubyte.gz", arrays["x_test"]),
            ("t10k-labels-idx1-ubyte.gz", arrays["y_test"]),
        ):
            _write_idx_gz(os.path.join(out_dir, fname), arr)
    else:
        out_dir = src.location
    for fname, (_, magic, count) in _IDX_FILES.items():
        _check_idx_file(os.path.join(out_dir, fname), magic, count)
    _check_first_labels(name, os.path.join(out_dir, "train-labels-idx1-ubyte.gz"))
    return out_dir


@contextlib.contextmanager
def _stdout_to_log():
    """Sends what TFDS prints on stdout ("Dataset ... downloaded and prepared to ...") to the log.

    A library must not write on its caller's stdout (``pcl-data`` prints exactly one line there).
    Progress bars go to stderr and are left alone.
    """
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        try:
            yield
        finally:
            for line in printed.getvalue().splitlines():
                if line.strip():
                    logging.info("tfds: %s", line.strip())


def _prepare_from_idx(builder, idx_dir: str, work_dir: str) -> None:
    """Prepares TFDS's MNIST/Fashion-MNIST builder offline from the four IDX .gz files.

    TFDS's download manager, for a URL whose checksum is registered (the builder's
    ``url_infos``, from ``url_checksums/<name>.txt``), treats the file
    ``<download_dir>/get_dl_fname(url, registered_sha256)`` as already downloaded when an
    ``.INFO`` JSON sits next to it, and then validates the *registered* size/checksum against
    itself: it does not hash the file again.  So each local file is copied under the name TFDS
    would have given the original download, with the INFO file TFDS would have written, and
    ``download_and_prepare`` runs with ``try_download_gcs=False`` (which would otherwise look for
    a pre-built copy on GCS over the network).  The local .gz files are not byte-identical to the
    upstream ones (Debian's gzip headers lack the original file name, so they are len(name) + 1
    bytes shorter and their sha256 differs: TFDS's own check, e.g. through ``manual_dir``,
    rejects them; the decompressed IDX data is the same), which is why their IDX headers and
    first labels are checked here instead; TFDS then checks the example counts as it prepares.

    The result is exactly what TFDS makes of a download: same examples, in the same order (TFDS
    writes examples sorted by a hash of their key, the index in the IDX file, salted with the
    split name, so TFDS's order is a fixed permutation of the IDX/Keras order).

    The cache lives in ``work_dir`` (a temporary directory), so nothing but the prepared dataset
    is left behind.
    """
    tfds = _tfds()
    from etils import epath  # pylint: disable=g-import-not-at-top
    # TFDS's own naming of cached downloads and of their INFO files (not part of its public API).
    from tensorflow_datasets.core.download import (  # pylint: disable=g-import-not-at-top
        resource as resource_lib,
    )

    by_filename = {
        os.path.basename(urllib.parse.urlparse(url).path): (url, url_info)
        for url, url_info in (builder.url_infos or {}).items()
    }
    download_dir = os.path.join(work_dir, "downloads")
    os.makedirs(download_dir, exist_ok=True)
    for fname in _IDX_FILES:
        if fname not in by_filename:
            raise DatasetError(
                f"TFDS {tfds.__version__} registers no URL ending in {fname} for {builder.name}; "
                "cannot prepare it offline with this TFDS version"
            )
        url, url_info = by_filename[fname]
        dst = os.path.join(download_dir, resource_lib.get_dl_fname(url, url_info.checksum))
        shutil.copyfile(os.path.join(idx_dir, fname), dst)
        resource_lib.write_info_file(
            url=url,
            path=epath.Path(dst),
            dataset_name=builder.name,
            original_fname=fname,
            url_info=url_info,
        )
    with _stdout_to_log():
        builder.download_and_prepare(
            download_dir=download_dir,
            download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        )


# --------------------------------------------------------------------------------------------
# Preparation.


def _network_problem(builder) -> Optional[str]:
    """Returns why the builder's download hosts are unreachable, or None when they answer."""
    hosts = set()
    for url in list((builder.url_infos or {}).keys()) + ["https://storage.googleapis.com/"]:
        parsed = urllib.parse.urlparse(url)
        if parsed.hostname:
            hosts.add((parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443)))
    for host, port in sorted(hosts):
        try:
            socket.create_connection((host, port), timeout=_NETWORK_TIMEOUT_S).close()
        except OSError as e:
            return f"cannot reach {host}:{port} ({e.__class__.__name__}: {e})"
    return None


def _missing_message(ds_info: DatasetInfo, data_dir: str, version: str) -> str:
    """The one-line message for a dataset that is neither prepared nor preparable offline."""
    where = os.path.join(data_dir, ds_info.tfds_name, version)
    files = ", ".join(_IDX_FILES)
    if ds_info.name == "fashion_mnist":
        return (
            f"fashion_mnist is not prepared in {data_dir} and no raw files were found: run "
            f"`apt-get install dataset-fashion-mnist` (or `pcl-data --dataset=fmnist --install`), "
            f"or put {files} in {manual_dir('fashion_mnist', data_dir)} "
            f"(or {os.path.join(_keras_datasets_dir(), 'fashion-mnist')})"
        )
    if ds_info.name == "mnist":
        return (
            f"mnist is not prepared in {data_dir} and no raw files were found: put {files} in "
            f"{manual_dir('mnist', data_dir)}, or Keras' mnist.npz in {_keras_datasets_dir()}, "
            f"or copy a prepared TFDS copy to {where}, or allow downloading "
            "(allow_download=True; pcl-data --download)"
        )
    return (
        f"{ds_info.tfds_name} {version} is not prepared in {data_dir}: copy a TFDS-prepared copy "
        f"(`tfds build {ds_info.tfds_name}` on a machine with internet) to {where}, point "
        f"--data_dir (or $TFDS_DATA_DIR) at a directory holding one, or allow downloading "
        "(allow_download=True; pcl-data --download)"
    )


def ensure_prepared(
    name: str,
    data_dir: Optional[str] = None,
    *,
    raw_dir: Optional[str] = None,
    allow_download: bool = False,
) -> str:
    """Makes sure the TFDS copy of ``name`` exists in ``data_dir``; returns that data_dir.

    In order:
    1. Under ``tfds.testing.mock_data`` (see ``_tfds_is_mocked``) nothing is done.
    2. Already prepared in ``data_dir``: nothing is done.
    3. MNIST / Fashion-MNIST: the first local raw files found are used to prepare TFDS offline
       (``_prepare_from_idx``): ``raw_dir`` if given (a directory of the four IDX .gz files, or
       a Keras ``mnist.npz``; nothing else is searched then), else
       ``<data_dir>/downloads/manual/<tfds_name>/``, then for Fashion-MNIST the Debian package's
       ``/usr/share/datasets/fashion-mnist`` and Keras' cache ``$KERAS_HOME/datasets/fashion-mnist``
       (``~/.keras`` by default), for MNIST Keras' ``$KERAS_HOME/datasets/mnist.npz``.
    4. ``allow_download=True``: TFDS downloads and prepares it, after checking within a few
       seconds that the download hosts answer at all.
    5. Otherwise ``DatasetNotFoundError`` at once, with one line saying what to install or where
       to put which files.  TFDS itself is never left to discover a missing network (it retries
       for minutes).

    Args:
      name: dataset name or alias (see ``info``).
      data_dir: TFDS data directory; default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
      raw_dir: explicit location of raw MNIST/Fashion-MNIST files.
      allow_download: let TFDS download the data when it is not found locally.

    Returns:
      The TFDS data directory (absolute) in which the dataset is prepared.

    Raises:
      DatasetError: bad name, or raw files that are not what they should be.
      DatasetNotFoundError: the dataset is not there and cannot be prepared.
    """
    ds_info = info(name)
    data_dir = _resolve_data_dir(data_dir)
    tfds = _tfds()
    if _tfds_is_mocked():
        logging.debug("TFDS is mocked: not preparing %s", ds_info.tfds_name)
        return data_dir
    if is_prepared(ds_info.name, data_dir):
        return data_dir
    version = str(tfds.builder_cls(ds_info.tfds_name).VERSION)

    if ds_info.name in _FIRST_TRAIN_LABELS:
        candidates = _idx_candidates(ds_info.name, data_dir, raw_dir)
        found = next((c for c in candidates if _source_present(c)), None)
        if found is None and raw_dir is not None:
            what = "a Keras mnist.npz" if candidates[0].kind == "npz" else ", ".join(_IDX_FILES)
            raise DatasetNotFoundError(f"raw_dir {raw_dir} does not hold {what}")
        if found is not None:
            logging.info(
                "preparing %s from %s into %s", ds_info.tfds_name, found.location, data_dir
            )
            local = "://" not in data_dir
            if local:
                os.makedirs(data_dir, exist_ok=True)
            with tempfile.TemporaryDirectory(
                prefix=".pcl_tf-prepare-", dir=data_dir if local else None
            ) as work_dir:
                idx_dir = _materialise_idx(ds_info.name, found, work_dir)
                builder = tfds.builder(ds_info.tfds_name, data_dir=data_dir)
                _prepare_from_idx(builder, idx_dir, work_dir)
            logging.info("prepared %s in %s", ds_info.tfds_name, builder.data_dir)
            return data_dir
    elif raw_dir is not None:
        raise DatasetError(f"raw_dir applies to mnist and fashion_mnist only, not {ds_info.name}")

    if allow_download:
        builder = tfds.builder(ds_info.tfds_name, data_dir=data_dir)
        problem = _network_problem(builder)
        if problem:
            raise DatasetNotFoundError(
                f"{ds_info.tfds_name} is not prepared in {data_dir} and cannot be downloaded: "
                f"{problem}"
            )
        logging.info("downloading and preparing %s into %s", ds_info.tfds_name, data_dir)
        with _stdout_to_log():
            builder.download_and_prepare()
        return data_dir

    raise DatasetNotFoundError(_missing_message(ds_info, data_dir, version))


# --------------------------------------------------------------------------------------------
# The input pipeline.


def _check_positive_int(value, what: str, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DatasetError(f"{what} must be a positive integer, got {value!r}")


def _augment(ds: "tf.data.Dataset", ds_info: DatasetInfo, seed: int) -> "tf.data.Dataset":
    """Random crop (zero padding ``crop_padding``) and/or horizontal flip, per uint8 example.

    Stateless ops draw their seeds from ``tf.data.Dataset.random(seed,
    rerandomize_each_iteration=True)``: reproducible for a given seed, different every epoch.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    height, width, channels = ds_info.image_shape
    pad = ds_info.crop_padding
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )

    def augment_one(example, rng):
        image, label = example
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(rng, 2))
        if pad:
            image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
            image = tf.image.stateless_random_crop(
                image, [height, width, channels], seed=crop_seed
            )
        if ds_info.random_flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        return image, label

    return tf.data.Dataset.zip(ds, seeds).map(
        augment_one, num_parallel_calls=tf.data.AUTOTUNE
    )


def load(
    name: str,
    split: str,
    *,
    batch_size: int,
    data_dir: Optional[str] = None,
    shuffle: bool = False,
    augment: bool = False,
    seed: int = 0,
    num_examples: Optional[int] = None,
    drop_remainder: bool = False,
    shuffle_buffer: int = 10_000,
    skip_examples: int = 0,
    num_examples_name: str = "num_examples",
) -> "tf.data.Dataset":
    """The batched input pipeline of one split.

    Yields ``(images, labels)``: images float32 in [0, 1] of shape (B, H, W, C) (not normalised:
    models normalise with ``info(name).mean/std``, attacks work in pixel space), labels int32 of
    shape (B,).  Calls ``ensure_prepared`` first (which fails fast with a one-line message when the
    data is not there).

    Args:
      name: dataset name or alias (see ``info``).
      split: "train" or "test".
      batch_size: examples per batch.
      data_dir: TFDS data directory (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      shuffle: shuffle files and examples, seeded by ``seed``, in a new order every iteration.
      augment: apply the dataset's train-time augmentation (``info(name).crop_padding`` and
        ``random_flip``); a no-op for datasets without one (MNIST, Fashion-MNIST).
      seed: seed of the shuffling and augmentation: the same seed gives the same sequence of
        epochs.
      num_examples: use only the first N examples of the split, in TFDS's canonical order (the
        same on every machine; for MNIST/Fashion-MNIST a fixed permutation of the IDX/Keras
        order, see ``_prepare_from_idx``) and before shuffling: e.g. a fixed evaluation subset.
      drop_remainder: drop the last incomplete batch.
      shuffle_buffer: examples held by the shuffle buffer.
      skip_examples: start after the first N examples (canonical order): with ``num_examples``, a
        slice such as the held-out validation images of robust early stopping.
      num_examples_name: what the caller calls ``num_examples`` (a flag, a config field), for
        the message when it asks for more examples than the split has.
    """
    ds_info = info(name)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(num_examples, "num_examples", allow_none=True)
    _check_positive_int(shuffle_buffer, "shuffle_buffer")
    data_dir = ensure_prepared(ds_info.name, data_dir)

    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    tfds = _tfds()
    builder = tfds.builder(ds_info.tfds_name, data_dir=data_dir)
    read_config = tfds.ReadConfig(
        shuffle_seed=seed if shuffle else None,
        shuffle_reshuffle_each_iteration=True if shuffle else None,
    )
    if skip_examples < 0:
        raise DatasetError(f"skip_examples={skip_examples} must be >= 0")
    skip = int(skip_examples)
    available = {"train": ds_info.train_examples, "test": ds_info.test_examples}.get(split)  # the real split's size
    if num_examples is not None and available and skip + int(num_examples) > available:
        after = f" after the first {skip}" if skip else ""
        raise DatasetError(f"{num_examples_name}={num_examples}{after} is more than the {available} examples of "
                           f"{ds_info.name}'s {split} split; give at most {available - skip} (or 0 for all of them)")
    # Slice to the end of the wanted range and skip the start in tf.data: the same on real data
    # and on mock data (which ignores slices).
    tfds_split = split if num_examples is None else f"{split}[:{skip + int(num_examples)}]"
    ds = builder.as_dataset(
        split=tfds_split, as_supervised=True, shuffle_files=shuffle and not skip, read_config=read_config
    )
    if skip:
        ds = ds.skip(skip)
    if num_examples is not None:
        # The slice above already does it on real data; mock data ignores slices.
        ds = ds.take(int(num_examples))
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if augment and ds_info.has_augmentation:
        ds = _augment(ds, ds_info, seed)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def to_float(images, labels):
        return tf.cast(images, tf.float32) / 255.0, tf.cast(labels, tf.int32)

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)

