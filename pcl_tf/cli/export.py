"""pcl-export: export a trained model as a versioned SavedModel for TensorFlow Serving.

    pcl-export --workdir=runs/fmnist_pcl --export_dir=exports/fmnist_pcl             (next free version)
    pcl-export --workdir=runs/fmnist_pcl --export_dir=exports/fmnist_pcl --version=3

Writes ``<export_dir>/<version>/`` (saved_model.pb, variables/, assets.extra/metadata.json and
copies of the work dir's reports/*.json) atomically; an existing version is never overwritten.
Serve it with ``tensorflow_model_server --rest_api_port=8501 --model_name=fmnist_pcl
--model_base_path=$PWD/exports/fmnist_pcl`` (BUILD.md, "Serving with TF Serving").
"""

from __future__ import annotations

import os

from absl import flags

from pcl_tf import versions  # no TensorFlow
from pcl_tf.cli import common

# Loaded at first use, once the flags are checked (they import TensorFlow).
export = common.lazy_module("pcl_tf.export")
workdirs = common.lazy_module("pcl_tf.workdir")

PROG = "pcl-export"

flags.DEFINE_string("workdir", None, "Work dir of a trained model (pcl-train --workdir).")
flags.DEFINE_string(
    "export_dir", None, "Model base path, e.g. exports/<model_name>; the version is a sub-directory of it."
)
flags.DEFINE_bool("allow_older_checkpoint", False, "If the newest checkpoint cannot be read, export the one before "
                  "it (the metadata names it and leaves out metrics and reports, which describe the newest).")
flags.DEFINE_integer("version", None, "Version number to write (a positive integer); default: the next free one.")
flags.DEFINE_string("slim_copy", None, "Instead of a SavedModel, write a slim copy of the work dir here (weights, "
                    "prototypes, config, metrics, reports; no optimizer state or logs) that pcl-attack and "
                    "pcl-export take like the original: how the shipped models in models/ are made.")
FLAGS = flags.FLAGS


def _check_flags():
    """Refuses bad flags before TensorFlow is imported.

    Importing TensorFlow takes seconds and writes log lines to stderr whatever
    TF_CPP_MIN_LOG_LEVEL says; a mistyped flag should cost neither. The destination check is the
    library's own (:func:`pcl_tf.versions.check_destination`, which needs no TensorFlow); the
    export makes it again before anything is written.
    """
    if not FLAGS.workdir:
        raise ValueError("give --workdir=DIR, the work dir of a trained model (pcl-train --workdir)")
    if not os.path.isdir(FLAGS.workdir):
        raise ValueError(f"work dir {FLAGS.workdir} does not exist; train one with pcl-train --workdir={FLAGS.workdir}")
    if FLAGS.slim_copy:
        if FLAGS.export_dir:
            raise ValueError("give either --export_dir (a SavedModel) or --slim_copy (a work dir copy), not both")
        if os.path.exists(FLAGS.slim_copy):
            raise ValueError(f"--slim_copy={FLAGS.slim_copy} already exists; slim copies are never written over")
        return
    if not FLAGS.export_dir:
        raise ValueError("give --export_dir=DIR, e.g. exports/<model_name>; versions are written under it")
    versions.check_destination(FLAGS.export_dir, FLAGS.version)


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; flags look like --export_dir=DIR")
    if FLAGS.slim_copy:
        print(f"slim copy of {FLAGS.workdir}: {workdirs.slim_copy(FLAGS.workdir, FLAGS.slim_copy)}")
        return
    path = export.export_workdir(FLAGS.workdir, FLAGS.export_dir, FLAGS.version,
                                 allow_older_checkpoint=FLAGS.allow_older_checkpoint)
    print(export.describe(path, FLAGS.workdir))


def run():
    common.run(main, PROG, errors=common.USAGE_ERRORS, check_flags=_check_flags)


if __name__ == "__main__":
    run()
