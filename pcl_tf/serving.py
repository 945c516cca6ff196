"""The serving module of a SavedModel: what TF Serving (or ``tf.saved_model.load``) runs.

:class:`ServingModule` holds the network's inference path (input -> logits, plus the deepest
supervised feature when the model has PCL branches) and a snapshot of that depth's prototypes. No
optimizer, no centroid optimizer, no PC-loss or auxiliary-branch losses, no training graph.

Signatures (inputs are NHWC images of the model's fixed height, width and channels):

  serving_default  ``images`` float32 in [0, 1]
  serving_uint8    ``images`` uint8 in 0..255 (divided by 255 inside)

  outputs  ``probabilities`` float32 (B, K)   softmax of the logits
           ``logits``        float32 (B, K)
           ``class_ids``     int64 (B,)       argmax of the logits
           ``prototype_class_ids`` int64 (B,) nearest-prototype rule (paper Eq. 6) on the deepest
                                              supervised feature; only for models with prototypes
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from pcl_tf import losses
from pcl_tf.models import registry

INPUT_NAME = "images"
SIGNATURE_FLOAT = "serving_default"
SIGNATURE_UINT8 = "serving_uint8"


PIXEL_RANGE_MESSAGE = ("images must lie in [0, 1] (pixel / 255); send raw 0-255 pixels as uint8 to the "
                       "serving_uint8 signature")
PIXEL_TOLERANCE = 1e-6  # float round-off of p / 255 computed elsewhere


class ServingModule(tf.Module):
    """What a SavedModel for serving holds: the inference path of a PCL network and its prototypes.

    ``network`` is the functional model of :func:`pcl_tf.models.build_network` (a dict of named
    outputs). Only the layers on the paths to ``logits`` and to ``feature_name`` are used, so the
    auxiliary CE heads (Eq. 8) are left out; ``prototypes`` (K, D) is copied into a variable of
    its own, so the PC layers (and their push centres in the official mode) are left out too.

    The SavedModel tracks the TensorFlow variables the signatures read, not the Keras objects
    (as ``keras.export.ExportArchive`` does): with the Keras model tracked, TF1-style loaders,
    which TF Serving and ``saved_model_cli run`` use, fail with "Could not find variable".
    """

    def __init__(self, network: keras.Model, feature_name: Optional[str] = None, prototypes=None,
                 name: str = "pcl_serving"):
        super().__init__(name=name)
        if (feature_name is None) != (prototypes is None):
            raise ValueError("give both feature_name and prototypes, or neither")
        outputs = {registry.LOGITS: network.output[registry.LOGITS]}
        if feature_name is not None:
            outputs["features"] = network.output[feature_name]
        inference = keras.Model(network.input, outputs, name=f"{network.name}_serving")
        # A partial is not trackable: the Keras model stays out of the SavedModel's object graph.
        self._forward = functools.partial(inference, training=False)
        self.feature_name = feature_name
        self.prototypes = (
            None if prototypes is None
            else tf.Variable(np.asarray(prototypes, np.float32), trainable=False, name="prototypes")
        )
        self.image_shape = tuple(int(d) for d in network.input.shape[1:])
        batch_shape = (None,) + self.image_shape
        self.serving_default = tf.function(
            self._predict_float, input_signature=[tf.TensorSpec(batch_shape, tf.float32, INPUT_NAME)]
        )
        self.serving_uint8 = tf.function(
            self._predict_uint8, input_signature=[tf.TensorSpec(batch_shape, tf.uint8, INPUT_NAME)]
        )
        used = {}
        for fn in self.signatures().values():
            used.update((id(v), v) for v in fn.variables if v is not self.prototypes)
        self.model_variables = list(used.values())

    @classmethod
    def from_pcl_model(cls, model) -> "ServingModule":
        """The serving module of a :class:`pcl_tf.training.PCLModel`.

        Eq. 6 is applied to the deepest supervised feature: the last of ``model.feature_names``
        (config order), with the prototypes of the PC layer trained on it.
        """
        if not model.pc_layers:
            return cls(model.network)
        return cls(model.network, model.feature_names[-1], model.pc_layers[-1].prototypes.numpy())

    def signatures(self) -> Dict[str, Any]:
        return {
            SIGNATURE_FLOAT: self.serving_default.get_concrete_function(),
            SIGNATURE_UINT8: self.serving_uint8.get_concrete_function(),
        }

    def _predict_float(self, images):
        images = self._checked(images)
        # A NaN pixel would come back as confident-looking class ids (argmax of NaN logits is
        # 0), and 0-255 pixels sent here by mistake as garbage: refuse both, inside the graph.
        checks = [
            tf.debugging.assert_all_finite(images, "images contain NaN or Inf; send pixel values in [0, 1]"),
            tf.debugging.assert_greater_equal(images, 0.0, message=PIXEL_RANGE_MESSAGE),
            tf.debugging.assert_less_equal(images, 1.0 + PIXEL_TOLERANCE, message=PIXEL_RANGE_MESSAGE),
        ]
        with tf.control_dependencies(checks):
            return self._predict(tf.identity(images))

    def _predict_uint8(self, images):
        # p / 255 looked up, not divided: in a graph, Grappler turns the division into a
        # multiplication by 1/255, which is 1 ulp off for half of the 256 values (logits then
        # differ by ~3e-6 from serving_default on numpy's p / 255). The table is exact.
        table = tf.constant(np.arange(256, dtype=np.float32) / np.float32(255.0))
        return self._predict(tf.gather(table, tf.cast(self._checked(images), tf.int32)))

    def _checked(self, images):
        # A loaded SavedModel does not check a tensor's shape against the signature, and the
        # network runs on 32x32 images or on one unbatched 28x28x1 image without complaint.
        # EnsureShape refuses them inside the graph, wherever the SavedModel is run.
        return tf.ensure_shape(images, (None,) + self.image_shape)

    def _predict(self, images):
        outputs = self._forward(images)
        logits = tf.cast(outputs[registry.LOGITS], tf.float32)
        result = {
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "logits": logits,
            "class_ids": tf.argmax(logits, axis=-1, output_type=tf.int64),
        }
        if self.prototypes is not None:
            # Eq. 6, the same function training's predictions use.
            result["prototype_class_ids"] = losses.nearest_prototype(outputs["features"], self.prototypes,
                                                                     output_type=tf.int64)
        return result
