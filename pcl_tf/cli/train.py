"""pcl-train: train a PCL (or softmax) model from a config file.

    pcl-train --dataset=fmnist --workdir=runs/fmnist_pcl
    pcl-train --config=configs/fmnist_cnn6.py:quick --workdir=runs/fmnist_pcl_quick
    pcl-train --config=configs/fmnist_cnn6.py:quick,softmax --config.train.epochs=5 --workdir=...

Without --config, the dataset's default config (configs/common.py: DEFAULT_CONFIGS) is used.
Running the same command again resumes from the last checkpoint in the work dir.
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

from pcl_tf import catalogue, config_schema, distribute  # no TensorFlow
from pcl_tf.cli import common
from pcl_tf.configs import common as configs_common

# The library modules that import TensorFlow load in main(), after the flags are parsed.

PROG = "pcl-train"

flags.DEFINE_string("dataset", None, "mnist, fashion_mnist (fmnist), cifar10, cifar100 or svhn.")
config_flags.DEFINE_config_file(
    "config", None, "configs/<dataset>_<model>.py[:variants]; default: the dataset's config."
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, config.json and metrics.json.")
flags.DEFINE_string("data_dir", None, "TFDS data dir (overrides config.data_dir).")
flags.DEFINE_enum("strategy", "auto", list(distribute.STRATEGIES),
                  "tf.distribute strategy: auto (all GPUs when several, else one device), default, mirrored, "
                  "multi_worker (MultiWorkerMirroredStrategy from TF_CONFIG; run the same command on every worker).")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices (testing mirrored on CPU).",
                     lower_bound=0)
flags.DEFINE_string("export_dir", None, "After training, export a SavedModel to <export_dir>/<next version>/ (pcl-export).")
flags.DEFINE_enum("verbose", "auto", ["auto", "0", "1", "2"], "Keras progress: 1 bar, 2 a line per epoch; auto: the bar on a terminal, lines otherwise.")
flags.DEFINE_bool("show_config", False, "Print every field of the config (--config or --dataset's) with its value "
                  "and what it means, then exit; set any with --config.<field>=value.")
FLAGS = flags.FLAGS


def _with_default_config(argv):
    """Inserts --config=<the dataset's default config> when only --dataset is given, so that
    --config.field=value overrides work on the default config too."""
    if any(a == "--config" or a.startswith("--config=") for a in argv):
        return argv
    dataset = None
    for i, arg in enumerate(argv):
        if arg.startswith("--dataset="):
            dataset = arg.split("=", 1)[1]
        elif arg == "--dataset" and i + 1 < len(argv):
            dataset = argv[i + 1]
    if dataset is None:
        return argv
    try:
        path = configs_common.default_config_path(dataset)
    except catalogue.DatasetError as e:
        common.fail(PROG, e)
    return argv[:1] + [f"--config={path}"] + argv[1:]


def _check_flags():
    """The checks that need no TensorFlow (common.run makes them before importing it)."""
    if FLAGS.config is None:
        raise ValueError("give --dataset=NAME or --config=configs/FILE.py[:variants]")
    if FLAGS.show_config:
        print(config_schema.describe(common.resolved_config(FLAGS.config)))
        sys.exit(0)
    if not FLAGS.workdir:
        raise ValueError("give --workdir=DIR, where checkpoints and metrics are written")
    config = common.resolved_config(FLAGS.config)
    if FLAGS.dataset and catalogue.info(FLAGS.dataset).name != config.dataset:
        raise ValueError(
            f"--dataset={FLAGS.dataset} conflicts with the config, which is for {config.dataset} (its model, "
            f"normalisation and schedule are that dataset's); drop --dataset, or give "
            f"--config={configs_common.default_config_path(FLAGS.dataset)}"
        )


def main(argv):
    from pcl_tf import experiment  # pylint: disable=g-import-not-at-top  (TensorFlow loads here)

    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; flags look like --workdir=DIR")
    config = common.resolved_config(FLAGS.config)
    if FLAGS.data_dir:
        config.data_dir = FLAGS.data_dir
    # auto: Keras' bar on a terminal; in a log or pipe a line per epoch, not carriage returns.
    verbose = (1 if sys.stdout.isatty() else 2) if FLAGS.verbose == "auto" else int(FLAGS.verbose)
    metrics, exported = experiment.train_and_export(
        config, FLAGS.workdir, strategy=FLAGS.strategy, cpu_devices=FLAGS.cpu_devices, verbose=verbose,
        export_dir=FLAGS.export_dir, announce=lambda line: print(line, flush=True))
    test = metrics["test"]
    print(f"test accuracy (softmax): {100 * test['softmax']:.2f} % on {test['num_examples']} images")
    for key, value in sorted(test.items()):
        if key.startswith("prototype_"):
            print(f"test accuracy (nearest prototype, {key[len('prototype_'):]}): {100 * value:.2f} %")
    print(f"work dir: {FLAGS.workdir}")
    if exported:
        print(f"exported SavedModel: {exported}")


def _run_failures():
    from pcl_tf import experiment, training  # pylint: disable=g-import-not-at-top

    return dict(failures=(training.TrainingDivergedError,), interruptions=(experiment.TrainingInterrupted,))


def run():
    sys.argv = _with_default_config(sys.argv)
    common.run(main, PROG, errors=(ValueError, catalogue.DatasetError), exits=_run_failures, check_flags=_check_flags)


if __name__ == "__main__":
    run()
