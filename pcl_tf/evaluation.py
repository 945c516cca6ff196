"""Accuracy of a model on a dataset: clean (softmax and Eq. 6) and under attack, per sample."""

from __future__ import annotations

import time
from typing import Dict, Optional

import keras
import numpy as np
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


def attack_dataset(
    target,
    dataset: tf.data.Dataset,
    attacks,
    source=None,
    progress: bool = True,
    num_examples: Optional[int] = None,
) -> Dict[str, np.ndarray]:
    """Runs every attack on every batch and records per-sample outcomes.

    ``target`` is the :class:`~pcl_tf.training.PCLModel` that is scored; ``source`` (default:
    ``target``, the white-box setting) the one the adversarial examples are crafted on
    (black-box/transfer). ``attacks`` is a sequence of :class:`pcl_tf.attacks.Attack`; those that
    need prototypes get the PCLModel, the others its logits-only twin (built once, so that the
    attacks' compiled functions are reused from batch to batch).

    Returns per-sample arrays: ``clean_correct``, and for each attack ``<name>/correct`` (the
    target classifies the adversarial image correctly), ``<name>/linf`` and ``<name>/l2`` (the
    perturbation norms), plus ``<name>/seconds`` (total attack time, a 1-element array).
    Memory stays bounded: only these per-sample scalars are kept, never the images.
    """
    source = target if source is None else source
    target_logits = target.inference_model()
    source_logits = target_logits if source is target else source.inference_model()
    predict = tf.function(lambda x: tf.argmax(target_logits(x, training=False), axis=1, output_type=tf.int32))
    records: Dict[str, list] = {"clean_correct": []}
    seconds = {attack.name: 0.0 for attack in attacks}
    bar = keras.utils.Progbar(num_examples, unit_name="image", verbose=1 if progress else 0)
    done = 0
    for x, y in dataset:
        y = tf.cast(y, tf.int32)
        records["clean_correct"].append((predict(x) == y).numpy())
        for attack in attacks:
            start = time.time()
            x_adv = tf.convert_to_tensor(attack.fn(source if attack.needs_prototypes else source_logits, x, y))
            seconds[attack.name] += time.time() - start
            delta = tf.reshape(x_adv - x, [tf.shape(x)[0], -1])
            name = attack.name
            records.setdefault(f"{name}/correct", []).append((predict(x_adv) == y).numpy())
            records.setdefault(f"{name}/linf", []).append(tf.reduce_max(tf.abs(delta), axis=1).numpy())
            records.setdefault(f"{name}/l2", []).append(tf.norm(delta, axis=1).numpy())
        done += int(x.shape[0])
        bar.update(done)
    results = {key: np.concatenate(values) for key, values in records.items()}
    for name, value in seconds.items():
        results[f"{name}/seconds"] = np.array([value])
    return results


def summarize(results: Dict[str, np.ndarray], attack_names) -> Dict:
    """Clean accuracy, each attack's robust accuracy, and the per-sample worst case.

    A sample counts as robust to an attack when the model classifies both the clean image and
    the adversarial image correctly (AutoAttack's convention: a misclassified image is never
    robust); it counts in ``worst_case`` only when it survived *every* attack run.
    """
    clean = results["clean_correct"].astype(bool)
    n = int(clean.size)
    summary = {"num_examples": n, "clean_accuracy": float(clean.mean()), "attacks": {}}
    worst = clean.copy()
    for name in attack_names:
        robust = clean & results[f"{name}/correct"].astype(bool)
        worst &= robust
        linf, l2 = results[f"{name}/linf"], results[f"{name}/l2"]
        summary["attacks"][name] = {
            "robust_accuracy": float(robust.mean()),
            "robust_count": int(robust.sum()),
            "mean_linf": float(linf.mean()),
            "max_linf": float(linf.max()),
            "mean_l2": float(l2.mean()),
            "max_l2": float(l2.max()),
            "seconds": float(results[f"{name}/seconds"][0]),
        }
    summary["worst_case"] = {"robust_accuracy": float(worst.mean()), "robust_count": int(worst.sum())}
    return summary
