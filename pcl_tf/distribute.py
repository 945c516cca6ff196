"""Which ``tf.distribute`` strategy a run uses, chosen by name.

* ``auto``      MirroredStrategy over all GPUs when there are several, else the default strategy.
* ``default``   one device (TensorFlow's default strategy).
* ``mirrored``  MirroredStrategy over the GPUs, or — on a machine without GPUs — over the logical
                CPU devices (see :func:`split_cpu`), listed explicitly as measured with TF 2.21
                necessary.
* ``multi_worker`` MultiWorkerMirroredStrategy configured by ``TF_CONFIG`` (one process per
                machine; every one runs the same command). Keras 3's ``fit`` does not run under
                it as shipped (Keras 3.15, measured here); training runs :mod:`pcl_tf.custom_loop`. Only
                the chief (:func:`is_chief`) writes the work dir.

Variables — network, centroids, both optimizers, metrics — must be created inside
``strategy.scope()``; :func:`pcl_tf.experiment.train_and_evaluate` does that, and trains with
:mod:`pcl_tf.custom_loop` whenever there is more than one replica. The training step
averages the loss over the global batch (``PCLModel.train_step`` divides each replica's mean by
the number of replicas before the gradients are summed).
"""

from __future__ import annotations

import json
import os

# TensorFlow is imported in the functions: pcl-train reads STRATEGIES for its flags before it loads.

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def split_cpu(count: int) -> None:
    """Makes the first physical CPU appear as ``count`` logical devices (for testing mirrored
    training without GPUs). Must run before TensorFlow initialises its devices."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(count))


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy called ``name`` (see the module docstring)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "multi_worker":
        # Before anything touches the devices: the collectives must be configured before
        # TensorFlow's runtime starts ("Collective ops must be configured at program startup").
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy([g.name for g in gpus]) if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError("--strategy=multi_worker needs TF_CONFIG, the cluster and this process's task "
                         "(see BUILD.md, 'Several machines'); on one machine use --strategy=mirrored")
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        config["task"]["type"], int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"TF_CONFIG is not a valid cluster description ({e!r}); it needs "
                         '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}') from None
    if not workers:
        raise ValueError("TF_CONFIG lists no workers")


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the work dir: always, except under multi_worker, where only the
    chief does (the task ``chief``, or worker 0 of a cluster without one)."""
    resolver = getattr(strategy, "cluster_resolver", None) if is_multi_worker(strategy) else None
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()

