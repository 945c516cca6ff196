"""Batch normalisation as one fused kernel: Keras 3's layer, computed by TensorFlow's FusedBatchNorm.

Keras 3's ``BatchNormalization`` computes its statistics with ``tf.nn.moments`` and normalises
with ``tf.nn.batch_normalization``: a handful of separate reductions and element-wise ops forward,
and about twice as many backward, each a full pass over the activation. TensorFlow's
``FusedBatchNormV3`` (what tf.keras 2 used with ``fused=True``, and what PyTorch's native kernel
corresponds to) does the forward in one op and the backward in one ``FusedBatchNormGradV3``. In a
deep BN network such as ResNet-110 (113 BN layers) the unfused ops are a large share of a CPU
training step.

:class:`FusedBatchNormalization` is Keras' layer with the same variables, arguments and
arithmetic — the moving statistics are updated with the biased batch variance exactly as Keras
does (the fused op returns Bessel's corrected one; it is converted back) — so checkpoints and
numbers carry over (equal to float rounding). It takes the fused path for 4-D channels-last float
inputs on the TensorFlow backend and falls back to Keras' own computation otherwise (masks,
renorm, synchronized statistics, other axes or ranks).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="pcl_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed by TensorFlow's fused kernel where it can be."""

    def _fused_applies(self, inputs, mask) -> bool:
        return (keras.backend.backend() == "tensorflow" and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4 and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        if not self._fused_applies(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        channels = x.shape[-1]
        gamma = ops.cast(self.gamma, x.dtype) if self.scale else tf.ones((channels,), x.dtype)
        beta = ops.cast(self.beta, x.dtype) if self.center else tf.zeros((channels,), x.dtype)
        moving_mean = ops.cast(self.moving_mean, x.dtype)
        moving_variance = ops.cast(self.moving_variance, x.dtype)
        if training and self.trainable:
            y, mean, corrected_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.zeros((0,), x.dtype), variance=tf.zeros((0,), x.dtype),
                epsilon=self.epsilon, is_training=True, data_format="NHWC", exponential_avg_factor=1.0)
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), x.dtype)
            variance = corrected_variance * tf.math.divide_no_nan(count - 1.0, count)  # Keras keeps the biased one
            self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=moving_mean, variance=moving_variance, epsilon=self.epsilon,
                is_training=False, data_format="NHWC")[0]
        return ops.cast(y, self.compute_dtype)
