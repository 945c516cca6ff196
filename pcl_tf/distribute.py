"""Which ``tf.distribute`` strategy a run uses, chosen by name.

* ``auto``      MirroredStrategy over all GPUs when there are several, else the default strategy.
* ``default``   one device (TensorFlow's default strategy).
* ``mirrored``  MirroredStrategy over the GPUs, or — on a machine without GPUs — over the logical
                CPU devices (see :func:`split_cpu`), listed explicitly as DESIGN.md §4 found
                necessary.
* ``multi_worker`` MultiWorkerMirroredStrategy configured by ``TF_CONFIG``. Keras 3's ``fit`` does
                not run under it as shipped (DESIGN.md §4); it is refused with that reason
                rather than left to fail deep inside Keras.

Variables — network, centroids, both optimizers, metrics — must be created inside
``strategy.scope()``; :func:`pcl_tf.experiment.train_and_evaluate` does that. The training step
averages the loss over the global batch (``PCLModel.train_step`` divides each replica's mean by
the number of replicas before the gradients are summed).
"""

from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def split_cpu(count: int) -> None:
    """Makes the first physical CPU appear as ``count`` logical devices (for testing mirrored
    training without GPUs). Must run before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(count))


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called ``name`` (see the module docstring)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy([g.name for g in gpus]) if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    raise ValueError(
        "multi_worker training is not supported yet: Keras 3's fit fails under "
        "MultiWorkerMirroredStrategy; use --strategy=mirrored on one machine"
    )

