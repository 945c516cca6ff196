"""Does a run on two replicas end where one device ends? Keras' ``fit`` vs pcl_tf's loop.

On real Fashion-MNIST (the first --examples training images, global batch --batch_size, SGD,
op determinism), CNN-6 + PCL trains --steps CE steps (the warm-up stage) three ways in one
process with two logical CPU devices: on one device with Keras' ``fit``; under MirroredStrategy
with Keras' ``fit``; under MirroredStrategy with :func:`pcl_tf.custom_loop.fit` (what pcl-train
runs with several replicas). Prints the max weight difference of each two-replica run from the
one-device run and writes JSON.

    python bench/distribute_equality.py [--steps=8] [--batch_size=32] [--out=bench/results/distribute_equality.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pcl_tf import distribute  # noqa: E402

distribute.split_cpu(2)  # before TensorFlow initialises its devices

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import common  # noqa: E402  (bench/common.py)
from pcl_tf import custom_loop, experiment, io_utils, training_setup  # noqa: E402

CONFIG = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "fmnist_cnn6.py")


def config():
    spec = importlib.util.spec_from_file_location("cfg", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("quick")
    c.train.optimizer, c.train.lr = "sgd", 0.05
    return c


def pipeline(batch_size: int, steps: int):
    """pcl-train's own pipeline (seeded shuffling every epoch, repeated), built afresh: a second
    iterator over one tf.data object would continue its reshuffling sequence."""
    c = config()
    c.train.batch_size, c.train.num_examples = batch_size, steps * batch_size
    keras.utils.set_random_seed(c.seed)  # as pcl-train does before building it
    return experiment._train_data(c, seed=c.seed).repeat()


def train(strategy, loop: bool, batches, steps: int):
    c = config()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = training_setup.build_model(c)
        training_setup.compile_model(model, c, steps_per_epoch=steps)
    if loop:
        custom_loop.fit(model, strategy, batches, epochs=1, initial_epoch=0, steps_per_epoch=steps)
    else:
        model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    return [w.numpy() for w in model.network.weights]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=32, help="the global batch")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "distribute_equality.json"))
    args = parser.parse_args(argv)
    if args.steps <= 0 or args.batch_size <= 0:
        parser.error("--steps and --batch_size must be > 0")
    tf.config.experimental.enable_op_determinism()
    one = train(distribute.make_strategy("default"), False, pipeline(args.batch_size, args.steps), args.steps)
    mirrored = distribute.make_strategy("mirrored")
    diffs = {}
    for name, loop in (("mirrored_keras_fit", False), ("mirrored_pcl_tf_loop", True)):
        weights = train(mirrored, loop, pipeline(args.batch_size, args.steps), args.steps)
        diffs[name] = max(float(np.abs(a - b).max()) for a, b in zip(one, weights))
        print(f"{name:>22}: max weight difference from one device {diffs[name]:.3g}", flush=True)
    io_utils.write_json_atomic(args.out, {
        "benchmark": "distribute_equality", "model": "cnn6 + PCL (CE warm-up steps)", "dataset": "fashion_mnist",
        "steps": args.steps, "global_batch_size": args.batch_size, "optimizer": "sgd 0.05, momentum 0.9",
        "max_weight_difference_from_one_device": diffs, **common.environment(),
    })
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
