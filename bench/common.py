"""What the benchmarks share: the CNN-6 they attack, the batches they time training on, and the
record of where they ran."""

from __future__ import annotations

import os
import platform
import sys
import time

import keras
import tensorflow as tf

from pcl_tf import catalogue, data, models
from pcl_tf import workdir as workdirs


def load_twin(workdir=None):
    """The logits-only CNN-6 of a work dir, or a fresh one (Fashion-MNIST shape) without one."""
    if workdir:
        model, _ = workdirs.load_trained(workdir)
        return model.inference_model()
    info = catalogue.info("fashion_mnist")
    network = models.build_network("cnn6", input_shape=info.image_shape, num_classes=10, mean=info.mean, std=info.std)
    return models.logits_model(network)


def timed_batches(steps: int, batch_size: int) -> tf.data.Dataset:
    """``steps`` real Fashion-MNIST training batches, read once into an in-memory cache here, so that
    no timed training call pays for reading them.

    tf.data's autotuning is switched off: its thread wakes after 10, 20, 40, ... ms, and a timed
    ``fit`` sometimes returned only at its next wake-up (a 10-step PCL + fast AT fit timed 20.47 s
    once against 14.7-15.0 s otherwise; 8.191, 2.047 and 1.023 s per step came out again and again,
    all 10 ms x (2^n - 1) / 10). Batches already in memory need no tuning."""
    ds = data.load("fashion_mnist", "train", batch_size=batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.autotune.enabled = False
    batches = ds.take(steps).cache().with_options(options)
    for _ in batches:  # fill the cache (a partly read cache is thrown away, so read it all)
        pass
    return batches


def fit_seconds(model, batches: tf.data.Dataset) -> float:
    """Wall-clock seconds of one training pass of ``model`` over ``batches`` (from ``timed_batches``:
    fixed and in memory, so nothing is shuffled or read while the clock runs)."""
    start = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - start


def environment() -> dict:
    """Machine, versions and date, stored with every benchmark result."""
    return {
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "tensorflow": tf.__version__, "keras": keras.__version__},
        "date": time.strftime("%Y-%m-%d"),
    }
