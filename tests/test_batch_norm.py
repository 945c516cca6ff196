"""pcl_tf.models.batch_norm: the fused layer computes what Keras' BatchNormalization computes —
outputs, gradients, moving statistics, and one training step of a whole ResNet — to float rounding."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pcl_tf import models
from pcl_tf.models import batch_norm, registry, resnet


def _pair(channels):
    """Keras' layer and the fused one, built alike with the same non-trivial weights."""
    rng = np.random.default_rng(0)
    layers = [cls(momentum=0.9, epsilon=1e-5) for cls in (keras.layers.BatchNormalization,
                                                           batch_norm.FusedBatchNormalization)]
    weights = [rng.normal(1, 0.3, channels), rng.normal(0, 0.3, channels), rng.normal(0, 0.5, channels),
               rng.uniform(0.5, 2, channels)]
    for layer in layers:
        layer.build((None, 6, 6, channels))
        layer.set_weights([w.astype(np.float32) for w in weights])  # gamma, beta, moving mean, moving variance
    return layers


@pytest.mark.parametrize("training", [True, False])
def test_outputs_gradients_and_moving_statistics_match_keras(training):
    x = tf.constant(np.random.default_rng(1).normal(2, 3, (8, 6, 6, 5)).astype(np.float32))
    results = []
    for layer in _pair(5):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * tf.cos(y))  # any non-linear function of every output
        grads = tape.gradient(loss, [x] + layer.trainable_weights)
        results.append([y] + grads + [layer.moving_mean, layer.moving_variance])
    for keras_value, fused_value in zip(*results):
        np.testing.assert_allclose(np.asarray(fused_value), np.asarray(keras_value), rtol=1e-4, atol=1e-4)
    if training:  # the statistics moved, by the biased batch variance as Keras does
        np.testing.assert_allclose(results[1][-1], 0.9 * _pair(5)[0].moving_variance + 0.1 * tf.math.reduce_variance(x, [0, 1, 2]),
                                   rtol=1e-5)


def test_falls_back_to_keras_for_inputs_the_fused_kernel_does_not_take():
    x = tf.constant(np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32))  # 2-D: Keras' own path
    keras_layer, fused = keras.layers.BatchNormalization(), batch_norm.FusedBatchNormalization()
    np.testing.assert_allclose(fused(x, training=True), keras_layer(x, training=True), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance, keras_layer.moving_variance, rtol=1e-6)


def test_one_resnet_training_step_is_as_exact_as_with_keras_batch_norm(monkeypatch):
    """ResNet-20 with Keras' BN and with the fused one (float32), and with Keras' BN in float64
    as the reference, from the same weights: one SGD step on the same batch. The logits agree to
    float rounding; after the step, the fused network's weights are as close to the float64
    reference as the Keras float32 network's are (a deep ReLU network's gradient amplifies float32
    rounding to ~1e-2 relative in its first layers, for either layer)."""
    monkeypatch.setitem(registry.PRECISION_POLICIES, "float64", "float64")

    def build(layer_class, precision="none"):
        monkeypatch.setattr(resnet, "BatchNormalization", layer_class)
        keras.utils.set_random_seed(0)
        return models.logits_model(models.build_network("resnet20", input_shape=(32, 32, 3), num_classes=10,
                                                        precision=precision))

    reference = build(keras.layers.BatchNormalization)
    fused = build(batch_norm.FusedBatchNormalization)
    exact = build(keras.layers.BatchNormalization, "float64")
    assert sum(isinstance(layer, batch_norm.FusedBatchNormalization) for layer in fused.layers) == 21  # stem, 18 in blocks, 2 projections
    fused.set_weights(reference.get_weights())
    exact.set_weights([w.astype(np.float64) for w in reference.get_weights()])
    initial = [np.asarray(w, np.float64) for w in reference.get_weights()]
    rng = np.random.default_rng(3)
    x = tf.constant(rng.uniform(size=(16, 32, 32, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, 10, 16))
    results = []
    for model in (reference, fused, exact):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        keras.optimizers.SGD(0.1).apply_gradients(zip(tape.gradient(loss, model.trainable_weights),
                                                      model.trainable_weights))
        results.append((np.asarray(logits, np.float64), [np.asarray(w, np.float64) for w in model.get_weights()]))
    (ref_logits, ref_weights), (fused_logits, fused_weights), (exact_logits, exact_weights) = results
    np.testing.assert_allclose(fused_logits, exact_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ref_logits, exact_logits, rtol=1e-5, atol=1e-5)

    def error(weights):
        """The largest error of any variable's update (gradient step or moving statistic), relative
        to the size of the exact update."""
        return max(np.abs(w - e).max() / np.abs(e - w0).max()
                   for w, e, w0 in zip(weights, exact_weights, initial) if np.abs(e - w0).max() > 0)

    assert error(fused_weights) <= 2 * error(ref_weights) + 1e-6, (error(fused_weights), error(ref_weights))
    assert error(fused_weights) < 0.05  # and, should Keras' own drift, not far from exact either
