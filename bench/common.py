"""What the benchmarks share: the CNN-6 they attack, and the record of where they ran."""

from __future__ import annotations

import os
import platform
import sys
import time

import keras
import tensorflow as tf

from pcl_tf import catalogue, models
from pcl_tf import workdir as workdirs


def load_twin(workdir=None):
    """The logits-only CNN-6 of a work dir, or a fresh one (Fashion-MNIST shape) without one."""
    if workdir:
        model, _ = workdirs.load_trained(workdir)
        return model.inference_model()
    info = catalogue.info("fashion_mnist")
    network = models.build_network("cnn6", input_shape=info.image_shape, num_classes=10, mean=info.mean, std=info.std)
    return models.logits_model(network)


def environment() -> dict:
    """Machine, versions and date, stored with every benchmark result."""
    return {
        "machine": {"node": platform.node(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "tensorflow": tf.__version__, "keras": keras.__version__},
        "date": time.strftime("%Y-%m-%d"),
    }
