"""The trained models shipped in models/: each loads with pcl_tf, and — where Debian's real
Fashion-MNIST is on the machine — classifies all 10,000 test images with the accuracy its
metrics.json (and docs/RESULTS.md) states."""

import gzip
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from pcl_tf import io_utils
from pcl_tf import workdir as workdirs

MODELS_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "models")
# models/in_progress/ carries unfinished reproduction runs between sessions (experiments/reproduce_fmnist.py --stash).
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
    model, config = workdirs.load_trained(workdir)
    metrics = io_utils.read_json(os.path.join(workdir, workdirs.METRICS_FILE))
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


ATTACK_ON_MOCK_DATA = ("import sys, tensorflow_datasets as tfds\n"
                       "from pcl_tf.cli import attack\n"
                       "sys.argv = ['pcl-attack'] + sys.argv[1:]\n"
                       "with tfds.testing.mock_data(num_examples=32):\n"
                       "    attack.run()\n")


def _files(directory):
    return {os.path.join(r, f): os.path.getmtime(os.path.join(r, f)) for r, _, fs in os.walk(directory) for f in fs}


def test_commands_that_read_a_shipped_model_never_write_into_it(tmp_path):
    """A shipped model is a slim copy (SLIM_COPY): pcl-attack writes its reports to
    pcl_reports/<model>/ in the current directory, and pcl-train refuses it. (Mock images: what is
    checked is where things are written, not the numbers.)"""
    name = "fmnist_cnn6_softmax"
    workdir = os.path.join(MODELS_DIR, name)
    assert workdirs.is_slim_copy(workdir)
    before = _files(MODELS_DIR)
    proc = subprocess.run([sys.executable, "-c", ATTACK_ON_MOCK_DATA, f"--workdir={os.path.abspath(workdir)}",
                           "--method=fgsm", "--num_examples=16", "--noaudit", "--noprogress"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = os.path.join("pcl_reports", name, "whitebox_fgsm_eps0.3_n16_seed0.json")
    assert f"report: {report}" in proc.stdout and os.path.exists(tmp_path / report)
    train = subprocess.run([sys.executable, "-m", "pcl_tf.cli.train", f"--workdir={os.path.abspath(workdir)}",
                            "--config=" + os.path.join(MODELS_DIR, os.pardir, "configs", "fmnist_cnn6.py") + ":softmax"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert train.returncode == 2 and "is a slim copy" in train.stderr, train.stderr[-2000:]
    assert _files(MODELS_DIR) == before  # nothing under models/ written, touched or added


def test_every_shipped_model_is_marked_as_a_slim_copy():
    assert all(workdirs.is_slim_copy(os.path.join(MODELS_DIR, name)) for name in SHIPPED)
