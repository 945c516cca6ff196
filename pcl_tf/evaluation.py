"""Accuracy of a trained model on a dataset: softmax, and the nearest-prototype rule (Eq. 6)."""

from __future__ import annotations

from typing import Dict

import tensorflow as tf


def clean_accuracy(model, dataset: tf.data.Dataset) -> Dict[str, float]:
    """Streams ``dataset`` once; returns ``softmax`` accuracy, one ``prototype_<layer>`` accuracy
    per PC layer (Eq. 6 on that layer's features), and ``num_examples``."""

    @tf.function
    def correct_counts(x, y):
        y = tf.cast(y, tf.int32)
        logits = model(x, training=False)
        counts = {"softmax": _count_equal(tf.argmax(logits, axis=1, output_type=tf.int32), y)}
        for name, predictions in model.nearest_prototype_predictions(x).items():
            counts["prototype_" + name] = _count_equal(predictions, y)
        return counts

    totals: Dict[str, int] = {}
    seen = 0
    for x, y in dataset:
        for key, value in correct_counts(x, y).items():
            totals[key] = totals.get(key, 0) + int(value)
        seen += int(tf.shape(y)[0])
    if seen == 0:
        raise ValueError("the evaluation dataset is empty")
    result = {key: value / seen for key, value in totals.items()}
    result["num_examples"] = seen
    return result


def _count_equal(a, b):
    return tf.reduce_sum(tf.cast(tf.equal(a, b), tf.int32))
