"""The trained models shipped in models/: each loads with pcl_tf, and — where Debian's real
Fashion-MNIST is on the machine — classifies all 10,000 test images with the accuracy its
metrics.json (and docs/RESULTS.md) states."""

import gzip
import os
import re

import numpy as np
import pytest

from pcl_tf import experiment, io_utils

MODELS_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "models")
# models/in_progress/ carries unfinished reproduction runs between sessions (bench/reproduce_fmnist.py --stash).
SHIPPED = sorted(d for d in os.listdir(MODELS_DIR) if os.path.isdir(os.path.join(MODELS_DIR, d)) and d != "in_progress")
TEST_IMAGES = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
TEST_LABELS = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"


def test_the_reproduction_models_are_all_shipped():
    assert {"fmnist_cnn6_softmax", "fmnist_cnn6_pcl", "fmnist_cnn6_pcl_advfgsm", "fmnist_cnn6_pcl_advpgd",
            "fmnist_cnn6_madry"} <= set(SHIPPED)


def idx_test_set():
    """The test split straight from the IDX files (its order does not matter for an accuracy)."""
    with gzip.open(TEST_IMAGES) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(TEST_LABELS) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images.astype(np.float32) / 255.0, labels


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_and_has_its_stated_accuracy(name):
    workdir = os.path.join(MODELS_DIR, name)
    model, config = experiment.load_trained(workdir)
    metrics = io_utils.read_json(os.path.join(workdir, experiment.METRICS_FILE))
    assert (config.dataset, config.model) == (metrics["dataset"], metrics["model"])
    if not (os.path.isfile(TEST_IMAGES) and os.path.isfile(TEST_LABELS)):
        pytest.skip("no real Fashion-MNIST in /usr/share/datasets (apt-get install dataset-fashion-mnist)")
    images, labels = idx_test_set()
    logits = model.inference_model().predict(images, batch_size=1000, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == labels))
    assert accuracy == pytest.approx(metrics["test"]["softmax"], abs=5e-4)


def test_shipped_files_carry_no_machine_paths():
    """Reports, configs and metrics under models/ name models by name: a path of the machine that
    wrote them (/work/..., /tmp/...) would mean nothing elsewhere (``report.make_portable``)."""
    machine_path = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|mnt|var|Users)/")
    found = []
    for root, _, files in os.walk(MODELS_DIR):
        for name in files:
            if name.endswith((".json", ".md")):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    found += [f"{os.path.relpath(path, MODELS_DIR)}: {m.group(0)}" for m in machine_path.finditer(f.read())]
    assert not found, found[:5]
