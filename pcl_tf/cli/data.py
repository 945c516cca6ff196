"""pcl-data: prepare a dataset for pcl_tf and say where it is.

    pcl-data --dataset=fmnist [--data_dir=DIR] [--raw_dir=DIR] [--install] [--download]

Prepares the TFDS copy of the dataset (``pcl_tf.data.ensure_prepared``: offline from local raw
files for MNIST/Fashion-MNIST, never a silent minutes-long wait on a dead network) and prints one
line on stdout: where the dataset is and how many train/test examples it has.  Errors are one line
on stderr, ``pcl-data: error: ...``, with exit status 2 and no traceback (``common.run``).

``--install`` installs the Debian package ``dataset-fashion-mnist`` with apt-get when
Fashion-MNIST is missing (root on Debian/Ubuntu only), then prepares it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Sequence

from absl import flags, logging

from pcl_tf import data
from pcl_tf.cli import common

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "dataset", None, "Dataset: mnist, fashion_mnist (fmnist), cifar10, cifar100 or svhn."
)
flags.DEFINE_string(
    "data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)."
)
flags.DEFINE_string(
    "raw_dir",
    None,
    "MNIST/Fashion-MNIST only: directory holding the four IDX .gz files (or a Keras mnist.npz) "
    "to prepare from; default: search the usual places.",
)
flags.DEFINE_bool(
    "install",
    False,
    "If Fashion-MNIST is missing, install the Debian package dataset-fashion-mnist with apt-get "
    "(needs root), then prepare it.",
)
flags.DEFINE_bool(
    "download", False, "Let TFDS download the dataset if it is not found locally (needs internet)."
)

PROG = "pcl-data"
_APT_PACKAGE = "dataset-fashion-mnist"


def _apt_get(*args: str) -> int:
    cmd = ["apt-get", *args]
    print(f"{PROG}: running: {' '.join(cmd)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(cmd, env=env, check=False).returncode


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
        raise data.DatasetError(
            f"--install needs root on Debian/Ubuntu with apt-get; run "
            f"`sudo apt-get install {_APT_PACKAGE}` yourself"
        )
    if _apt_get("install", "-y", _APT_PACKAGE) != 0:
        _apt_get("update")
        rc = _apt_get("install", "-y", _APT_PACKAGE)
        if rc != 0:
            raise data.DatasetError(
                f"`apt-get install -y {_APT_PACKAGE}` failed (exit status {rc})"
            )


def _prepare(name: str) -> str:
    try:
        return data.ensure_prepared(
            name, FLAGS.data_dir, raw_dir=FLAGS.raw_dir, allow_download=FLAGS.download
        )
    except data.DatasetNotFoundError:
        if not (FLAGS.install and name == "fashion_mnist" and FLAGS.raw_dir is None):
            raise
    _install_fashion_mnist()
    return data.ensure_prepared(name, FLAGS.data_dir, allow_download=FLAGS.download)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise data.DatasetError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.dataset:
        raise data.DatasetError(
            "--dataset is required (mnist, fashion_mnist, cifar10, cifar100 or svhn)"
        )
    ds_info = data.info(FLAGS.dataset)
    if not FLAGS["verbosity"].present and not data.is_prepared(ds_info.name, FLAGS.data_dir):
        # common.run keeps the console at WARNING; say where the data is prepared from.
        logging.set_verbosity(logging.INFO)
    data_dir = _prepare(ds_info.name)

    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    builder = tfds.builder(ds_info.tfds_name, data_dir=data_dir)
    splits = builder.info.splits
    print(
        f"{ds_info.name}: TFDS {ds_info.tfds_name} {builder.version} ready in {builder.data_dir} "
        f"({splits['train'].num_examples} train, {splits['test'].num_examples} test examples)",
        flush=True,
    )


def run() -> None:
    """Console-script entry point: ``absl.app.run(main)`` with one-line errors and exit 2."""
    common.run(main, PROG, errors=(data.DatasetError,))


if __name__ == "__main__":
    run()
