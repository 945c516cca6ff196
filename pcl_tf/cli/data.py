"""pcl-data: prepare a dataset for pcl_tf and say where it is.

    pcl-data --dataset=fmnist [--data_dir=DIR] [--raw_dir=DIR] [--install] [--download]

Prepares the TFDS copy of the dataset (``pcl_tf.prepare.ensure_prepared``: offline from local raw
files for MNIST/Fashion-MNIST, never a silent minutes-long wait on a dead network) and prints one
line on stdout: where the dataset is and how many train/test examples it has.  Errors are one line
on stderr, ``pcl-data: error: ...``, with exit status 2 and no traceback (``common.run``).

``--install`` installs the Debian package ``dataset-fashion-mnist`` with apt-get when
Fashion-MNIST is missing (root on Debian/Ubuntu only), then prepares it.
"""

from __future__ import annotations

from typing import Sequence

from absl import flags, logging

from pcl_tf import catalogue, prepare  # neither imports TensorFlow or TFDS at import time
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


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise catalogue.DatasetError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.dataset:
        raise catalogue.DatasetError(
            "--dataset is required (mnist, fashion_mnist, cifar10, cifar100 or svhn)"
        )
    ds_info = catalogue.info(FLAGS.dataset)
    if not FLAGS["verbosity"].present and not prepare.is_prepared(ds_info.name, FLAGS.data_dir):
        # common.run keeps the console at WARNING; say where the data is prepared from.
        logging.set_verbosity(logging.INFO)
    print(prepare.prepare(ds_info.name, FLAGS.data_dir, raw_dir=FLAGS.raw_dir, allow_download=FLAGS.download,
                          install=FLAGS.install), flush=True)


def run() -> None:
    """Console-script entry point: ``absl.app.run(main)`` with one-line errors and exit 2."""
    common.run(main, PROG, errors=(catalogue.DatasetError,))


if __name__ == "__main__":
    run()
