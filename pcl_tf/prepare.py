"""Preparing a dataset's TFDS copy, offline where possible, *without ever making the user wait on a
dead network*.

Offline, ``tfds.load('mnist')`` retries its downloads for ~200 s before it fails; here
(:func:`ensure_prepared`) a missing dataset fails in well under a second with one line saying
what to install or where to put which files. MNIST and Fashion-MNIST are prepared offline from
local raw files when there are some (the Debian package ``dataset-fashion-mnist``, the Keras
cache, or a directory given by the user), by seeding TFDS's download cache (see
``_prepare_from_idx``). :func:`prepare` is ``pcl-data``: that, plus installing the Debian package
when asked, and the one line saying where the dataset is.

TFDS is imported on first use, not at import time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import inspect
import io
import logging as std_logging
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import urllib.parse
from typing import Dict, List, Optional, Tuple

from absl import logging
import numpy as np

from pcl_tf.catalogue import DatasetError, DatasetInfo, info

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


class DatasetNotFoundError(DatasetError):
    """The dataset is not prepared and cannot be prepared from anything on this machine."""


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
# pcl-data: prepare, installing Fashion-MNIST's Debian package when asked.

_APT_PACKAGE = "dataset-fashion-mnist"
logger = std_logging.getLogger(__name__)


def prepare(name: str, data_dir: Optional[str] = None, *, raw_dir: Optional[str] = None,
            allow_download: bool = False, install: bool = False) -> str:
    """``pcl-data``: :func:`ensure_prepared`, and with ``install`` (root on Debian/Ubuntu), when
    Fashion-MNIST is found nowhere, its Debian package installed with apt-get first. Returns one
    line: where the dataset is prepared and how many train/test examples it has."""
    ds_info = info(name)
    try:
        data_dir = ensure_prepared(ds_info.name, data_dir, raw_dir=raw_dir, allow_download=allow_download)
    except DatasetNotFoundError:
        if not (install and ds_info.name == "fashion_mnist" and raw_dir is None):
            raise
        _install_fashion_mnist()
        data_dir = ensure_prepared(ds_info.name, data_dir, allow_download=allow_download)
    builder = _tfds().builder(ds_info.tfds_name, data_dir=data_dir)
    splits = builder.info.splits
    return (f"{ds_info.name}: TFDS {ds_info.tfds_name} {builder.version} ready in {builder.data_dir} "
            f"({splits['train'].num_examples} train, {splits['test'].num_examples} test examples)")


def _install_fashion_mnist() -> None:
    """apt-get installs the Debian package holding the Fashion-MNIST IDX files.

    Updates the package lists once if the first attempt fails (fresh containers have none).
    """
    if not (
        hasattr(os, "geteuid")
        and os.geteuid() == 0
        and os.path.exists("/etc/debian_version")
        and shutil.which("apt-get")
    ):
        raise DatasetError(
            f"--install needs root on Debian/Ubuntu with apt-get; run "
            f"`sudo apt-get install {_APT_PACKAGE}` yourself"
        )
    if _apt_get("install", "-y", _APT_PACKAGE) != 0:
        _apt_get("update")
        rc = _apt_get("install", "-y", _APT_PACKAGE)
        if rc != 0:
            raise DatasetError(
                f"`apt-get install -y {_APT_PACKAGE}` failed (exit status {rc})"
            )


def _apt_get(*args: str) -> int:
    cmd = ["apt-get", *args]
    # On pcl_tf's logger: pcl-data shows it as "pcl-data: running: apt-get ..." on the console.
    logger.warning("running: %s", " ".join(cmd))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(cmd, env=env, check=False).returncode
