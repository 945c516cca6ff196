"""--strategy=multi_worker: two worker processes on 127.0.0.1 (TF_CONFIG) train CNN-6 through
pcl_tf's own loop (Keras 3's fit fails under MultiWorkerMirroredStrategy) and end with identical
weights, equal to one process training on the same global batches; only the chief writes the
work dir. Each run is bounded in time and stops by itself.

Runs are real processes on TFDS mock data (the same images in every process). Each records the
weights its model ends with (the model handed to the final evaluation).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = r"""
import os, sys
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from pcl_tf import custom_loop, distribute, experiment, training_setup
from pcl_tf.configs import fmnist_cnn6
sys.path.insert(0, %(tests)r)
from synthetic import stripes

workdir, out = sys.argv[1], sys.argv[2]
multi_worker = "TF_CONFIG" in os.environ
strategy = distribute.make_strategy("multi_worker" if multi_worker else "default")
config = fmnist_cnn6.get_config("smoke")
# SGD: Adam moves every weight by ~lr whatever the size of its gradient, so float round-off in
# near-zero gradients (a sum over two replicas vs one batch) would become +-lr steps; with SGD
# the comparison shows whether the workers together took the global batches one process takes.
config.train.optimizer, config.train.lr = "sgd", 0.05

# 1. The loop itself on in-memory global batches: 2 epochs x 4 steps of 32, joint CE + PC.
x, y = stripes(128, seed=3)
batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).repeat()
with strategy.scope():
    tf.keras.utils.set_random_seed(0)
    model = training_setup.build_model(config)
    training_setup.compile_model(model, config, steps_per_epoch=4)
model.pc_active.assign(1.0)
if multi_worker:
    custom_loop.fit(model, strategy, batches, epochs=2, initial_epoch=0, steps_per_epoch=4)
else:  # the reference: Keras' own fit on one device
    model.fit(batches, epochs=2, steps_per_epoch=4, verbose=0, shuffle=False)
np.savez(out, *[w.numpy() for w in model.network.weights + model.centroid_variables])

# 2. A whole pcl-train run (TFDS mock data): warm-up, joint stage, step checkpoints, metrics.
if multi_worker:
    config.train.num_examples, config.train.batch_size, config.train.epochs = 64, 32, 2
    config.eval.num_examples = 32
    with tfds.testing.mock_data(num_examples=96):
        experiment.train_and_evaluate(config, workdir, verbose=0, strategy=strategy)
print("replicas", strategy.num_replicas_in_sync, "chief", distribute.is_chief(strategy))
""" % {"tests": os.path.dirname(os.path.abspath(__file__))}
TIMEOUT = 300


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start(workdir, out, tf_config=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(workdir), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_all(procs):
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            assert p.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outputs


def weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def max_difference(a, b):
    assert len(a) == len(b)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_worker")
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = [start(root / "mw", root / f"worker{i}.npz",
                   {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}) for i in range(2)]
    procs.append(start(root / "single", root / "single.npz"))
    outputs = wait_all(procs)
    return root, outputs


def test_two_workers_end_identical_and_equal_to_one_process(runs):
    root, outputs = runs
    assert "replicas 2 chief True" in outputs[0] and "replicas 2 chief False" in outputs[1]
    w0, w1, single = (weights(root / name) for name in ("worker0.npz", "worker1.npz", "single.npz"))
    assert max_difference(w0, w1) == 0.0
    assert max_difference(w0, single) <= 1e-5


def test_only_the_chief_writes_the_work_dir(runs):
    root, _ = runs
    workdir = root / "mw"
    metrics = json.load(open(workdir / "metrics.json"))
    assert metrics["replicas"] == 2 and len(metrics["history"]["loss"]) == 2
    assert sorted(os.listdir(workdir)) == ["checkpoints", "config.json", "history.json", "metrics.json", "tensorboard"]
    # The checkpoints hold the chief's weights: a model restored from them is the trained one.
    assert not [d for d in os.listdir("/tmp") if d.startswith("pcl_tf_worker_")]  # scratch removed


def test_a_model_trained_by_two_workers_evaluates_and_is_attacked_on_one_device(runs):
    """Evaluation and attacks need no strategy: the chief's checkpoint loads like any other."""
    import tensorflow as tf

    from pcl_tf import attacks
    from pcl_tf import workdir as workdirs

    root, _ = runs
    model, config = workdirs.load_trained(str(root / "mw"))
    x = tf.random.stateless_uniform((8, 28, 28, 1), seed=[1, 2])
    y = tf.argmax(model.inference_model()(x), axis=1)
    pgd = attacks.make_attack("pgd", attacks.default_params("pgd", config.dataset, eps=0.3), seed=0)
    x_adv = pgd.fn(model.inference_model(), x, y)
    assert float(tf.reduce_max(tf.abs(x_adv - x))) <= 0.3 + 1e-6
    assert model.centroid_variables and all(np.isfinite(v.numpy()).all() for v in model.centroid_variables)


def test_multi_worker_without_tf_config_is_one_clear_line(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "pcl_tf.cli.train", "--dataset=fmnist", f"--workdir={tmp_path / 'r'}",
                           "--strategy=multi_worker"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "--strategy=multi_worker needs TF_CONFIG" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "r")
