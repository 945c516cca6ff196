"""tf.distribute: one step under MirroredStrategy over two logical CPUs equals the same global
batch on one device, with and without adversarial augmentation.

The logical devices must be configured before TensorFlow initialises, so each comparison runs
in a fresh Python process (the script below) and prints the max weight difference.
"""

import json
import subprocess
import sys

import pytest

from pcl_tf import distribute

SCRIPT = r"""
import json, sys
import numpy as np
from pcl_tf import distribute
distribute.split_cpu(2)
import keras, tensorflow as tf
from pcl_tf import adversarial, custom_loop, training

method = sys.argv[1]

def build():
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 1))
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(x))
    f = keras.layers.Dense(8, activation="relu")(h)
    net = keras.Model(x, {"logits": keras.layers.Dense(3)(f), "feat_f": f})
    adversary = None
    if method != "none":
        # "pgd_ramp": ε ramps over the two steps (0.05, then 0.1), read from the optimizer's step
        adversary = adversarial.AdversarialAugmentation(method.split("_")[0], 0.1, 0.1, steps=3, random_start=False,
                                                        ramp_steps=2 if method.endswith("_ramp") else 0)
    model = training.PCLModel(net, 3, adversary=adversary)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), centroid_optimizer=keras.optimizers.SGD(0.5))
    model.pc_active.assign(1.0)
    return model

rng = np.random.default_rng(0)
x = rng.random((16, 6, 6, 1), dtype=np.float32)
y = rng.integers(0, 3, 16).astype(np.int32)
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # two steps of a global batch of 8

weights = {}
for name, strategy in [("one", tf.distribute.get_strategy()), ("mirrored", distribute.make_strategy("mirrored"))]:
    with strategy.scope():
        model = build()
    if strategy.num_replicas_in_sync > 1:  # the loop pcl-train runs under several replicas
        history = custom_loop.fit(model, strategy, data.repeat(), epochs=1, initial_epoch=0, steps_per_epoch=2)
    else:
        history = model.fit(data, epochs=1, verbose=0, shuffle=False).history
    weights[name] = ([w.numpy() for w in model.network.weights], [w.numpy() for w in model.centroid_variables],
                     history["loss"][0], strategy.num_replicas_in_sync)
diff_w = max(float(np.abs(a - b).max()) for a, b in zip(weights["one"][0], weights["mirrored"][0]))
diff_c = max(float(np.abs(a - b).max()) for a, b in zip(weights["one"][1], weights["mirrored"][1]))
print(json.dumps({"weights": diff_w, "centroids": diff_c, "replicas": weights["mirrored"][3],
                  "loss_one": weights["one"][2], "loss_mirrored": weights["mirrored"][2]}))
"""


@pytest.mark.parametrize("method", ["none", "fgsm", "pgd", "pgd_ramp"])
def test_mirrored_step_equals_single_device(method):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, method], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["weights"] <= 1e-5 and result["centroids"] <= 1e-5, result
    # The logged loss is the real mean over the global batch, not 1/replicas of it.
    assert result["loss_mirrored"] == pytest.approx(result["loss_one"], rel=1e-4)


def test_strategy_names():
    with pytest.raises(ValueError, match="unknown strategy"):
        distribute.make_strategy("tpu")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("TF_CONFIG", raising=False)
        with pytest.raises(ValueError, match="needs TF_CONFIG"):
            distribute.make_strategy("multi_worker")
        env.setenv("TF_CONFIG", '{"cluster": {}}')
        with pytest.raises(ValueError, match="TF_CONFIG is not a valid cluster description"):
            distribute.make_strategy("multi_worker")
