"""Mixed precision (``config.mixed_precision``): layers compute in bfloat16 / float16 while the
variables, the logits, the PC loss and the prototypes stay float32; a few CNN-6 training steps
under mixed_bfloat16 on CPU give finite losses close to float32's from the same start."""

import importlib.util
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from pcl_tf import models, training_setup
from synthetic import stripes

CONFIG = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "fmnist_cnn6.py")
STEPS = 4


def config(precision):
    spec = importlib.util.spec_from_file_location("cfg", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("smoke")
    c.mixed_precision = precision
    return c


def train_steps(precision):
    """Losses of STEPS joint (CE + PC) steps, from weights seeded the same for every precision."""
    keras.utils.set_random_seed(0)
    c = config(precision)
    model = training_setup.build_model(c)
    training_setup.compile_model(model, c, steps_per_epoch=STEPS)
    model.pc_active.assign(1.0)
    x, y = stripes(32 * STEPS, seed=1)
    losses = []
    for step in range(STEPS):
        logs = model.train_step((tf.constant(x[32 * step:32 * (step + 1)]), tf.constant(y[32 * step:32 * (step + 1)])))
        losses.append({k: float(v) for k, v in logs.items()})
    return model, losses


@pytest.fixture(scope="module")
def float32_run():
    return train_steps("none")


def test_bfloat16_computes_low_and_keeps_logits_prototypes_and_variables_float32():
    model = training_setup.build_model(config("mixed_bfloat16"))
    outputs = model.network(tf.zeros((2, 28, 28, 1)))
    # The backbone computes in bfloat16; the logits and the features the PC loss sees leave the
    # network as float32.
    assert model.network.get_layer("layer1_conv1").compute_dtype == "bfloat16"
    assert model.network.get_layer("fc512").compute_dtype == "bfloat16"
    assert all(outputs[name].dtype == tf.float32 for name in [models.LOGITS] + model.feature_names)
    assert all(v.dtype == "float32" for v in model.network.weights)
    assert all(v.dtype == "float32" for v in model.centroid_variables)
    pc = model.pc_layers[0](outputs[model.feature_names[0]], tf.constant([0, 1]))
    assert pc.dtype == tf.float32
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_bfloat16_training_steps_are_finite_and_close_to_float32(float32_run):
    _, reference = float32_run
    _, low = train_steps("mixed_bfloat16")
    for step, (a, b) in enumerate(zip(reference, low)):
        assert all(np.isfinite(v) for v in b.values()), (step, b)
        assert b["loss"] == pytest.approx(a["loss"], rel=0.05), (step, a, b)
        assert b["ce"] == pytest.approx(a["ce"], rel=0.05), (step, a, b)


def test_float16_uses_loss_scaling_and_stays_finite(float32_run):
    """mixed_float16 is meant for GPUs; on CPU it runs (slowly) and shows the loss-scale path:
    the optimizer is a LossScaleOptimizer and the centroids get unscaled gradients."""
    _, reference = float32_run
    model, low = train_steps("mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert all(np.isfinite(v) for step in low for v in step.values())
    assert low[-1]["loss"] == pytest.approx(reference[-1]["loss"], rel=0.05)
    assert all(np.isfinite(v.numpy()).all() for v in model.centroid_variables)


def test_unknown_precision_is_refused():
    with pytest.raises(training_setup.ConfigError, match="config.mixed_precision='float8'"):
        training_setup.validate_config(config("float8"))
