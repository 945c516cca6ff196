"""Accuracy of a model on a dataset: clean (softmax and Eq. 6) and under attack, per sample."""

from __future__ import annotations

import logging
import sys
import time
from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger(__name__)


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
    journal=None,
):
    """Runs every attack on every batch and records per-sample outcomes.

    ``target`` is the :class:`~pcl_tf.training.PCLModel` that is scored, or a dict of them (name
    -> model) scored on the same adversarial images; ``source`` (default: the single target, the
    white-box setting) is the model the images are crafted on (black-box / transfer), once per
    batch whatever the number of targets. ``attacks`` is a sequence of
    :class:`pcl_tf.attacks.Attack`; those that need prototypes get the PCLModel, the others its
    logits-only twin (built once, so the attacks' compiled functions are reused).

    An attack with ``cascade=True`` (the strong suite, as in AutoAttack) runs only on the images
    no attack before it has broken yet, so its number is the robust accuracy *after it and every
    attack before it*; the others run on every image and give their own number. Only attacks
    ``within_eps`` count as breaking an image here: C&W-L2 is not bounded by ε, so an image it
    fooled is still attacked by the cascade.

    Returns per-sample arrays (a dict of them per target when ``target`` is a dict):
    ``clean_correct``, and for each attack ``<name>/correct`` (the target classifies the
    adversarial image correctly), ``<name>/linf`` and ``<name>/l2`` (perturbation norms, 0 where
    a cascaded attack did not run), plus ``<name>/seconds`` (attack time, a 1-element array).
    Memory stays bounded: only these per-sample scalars are kept, never the images.

    With a ``journal`` (:class:`pcl_tf.journal.EvaluationJournal`) the records are saved after
    every batch, and a journal left by a killed run is picked up: its batches are skipped.
    """
    single = not isinstance(target, dict)
    targets = {"": target} if single else dict(target)
    if source is None:
        if not single:
            raise ValueError("several targets need a source model to craft on (black-box)")
        source = target
    logits = {name: model.inference_model() for name, model in targets.items()}
    source_logits = logits[""] if single and source is target else source.inference_model()
    predict = {
        name: tf.function(lambda x, f=f: tf.argmax(f(x, training=False), axis=1, output_type=tf.int32))
        for name, f in logits.items()
    }
    records: Dict[str, Dict[str, list]] = {name: {"clean_correct": []} for name in targets}
    seconds = {attack.name: 0.0 for attack in attacks}
    bar = progress_bar(num_examples, progress)
    done = batches = 0
    resumed = journal.load() if journal is not None else None
    if resumed is not None:
        batches, records, seconds = resumed
        done = len(next(iter(records.values()))["clean_correct"][0])
        dataset = dataset.skip(batches)
        logger.info("resuming an interrupted evaluation after %d images (%d batches) from %s", done, batches,
                    journal.path)
        bar.update(done)
    for x, y in dataset:
        y = tf.cast(y, tf.int32)
        robust = {}
        for name in targets:
            robust[name] = (predict[name](x) == y).numpy()
            records[name]["clean_correct"].append(robust[name].copy())
        for attack in attacks:
            rows = np.arange(len(y))
            if attack.cascade:
                rows = np.flatnonzero(np.logical_or.reduce(list(robust.values())))
            x_adv = x.numpy().copy()
            start = time.time()
            if len(rows):
                crafted = attack.fn(source if attack.needs_prototypes else source_logits,
                                    tf.gather(x, rows), tf.gather(y, rows))
                x_adv[rows] = np.asarray(crafted)
            seconds[attack.name] += time.time() - start
            delta = (x_adv - x.numpy()).reshape(len(y), -1)
            for name in targets:
                correct = (predict[name](tf.constant(x_adv)) == y).numpy()
                if attack.cascade:
                    correct &= robust[name]  # broken before: stays broken
                if attack.within_eps:
                    robust[name] &= correct
                rec = records[name]
                rec.setdefault(f"{attack.name}/correct", []).append(correct)
                rec.setdefault(f"{attack.name}/linf", []).append(np.abs(delta).max(axis=1))
                rec.setdefault(f"{attack.name}/l2", []).append(np.linalg.norm(delta, axis=1))
        done += int(x.shape[0])
        batches += 1
        if journal is not None:
            journal.save(batches, records, seconds)
        bar.update(done)
    results = {}
    for name, rec in records.items():
        results[name] = {key: np.concatenate(values) for key, values in rec.items()}
        for attack_name, value in seconds.items():
            results[name][f"{attack_name}/seconds"] = np.array([value])
    return results[""] if single else results


def progress_bar(total: Optional[int], enabled: bool = True) -> keras.utils.Progbar:
    """Keras' progress bar, redrawn in place on a terminal; elsewhere (a log file, a pipe, CI)
    a plain line every 30 s instead of carriage returns and backspaces. Keras decides by the
    platform, not by the stream, and would fill a log with control characters."""
    on_terminal = sys.stdout.isatty()
    bar = keras.utils.Progbar(total, unit_name="image", verbose=1 if enabled else 0, interval=0.05 if on_terminal else 30)
    bar._dynamic_display = on_terminal  # pylint: disable=protected-access  (Keras has no public switch)
    return bar


def summarize(results: Dict[str, np.ndarray], attack_names, worst_case_over=None) -> Dict:
    """Clean accuracy, each attack's robust accuracy, and the per-sample worst case.

    Each attack's per-sample outcome is kept too (``robust_samples``, see :func:`pack_samples`),
    so that evaluations run separately on the same images can be combined per sample later
    (``pcl-attack --compare``).

    A sample counts as robust to an attack when the model classifies both the clean image and
    the adversarial image correctly (AutoAttack's convention: a misclassified image is never
    robust); it counts in ``worst_case`` only when it survived *every* attack of
    ``worst_case_over`` (default: all of ``attack_names``; pass the ones inside the ε-ball).
    """
    worst_case_over = list(attack_names if worst_case_over is None else worst_case_over)
    clean = results["clean_correct"].astype(bool)
    n = int(clean.size)
    summary = {"num_examples": n, "clean_accuracy": float(clean.mean()), "clean_samples": pack_samples(clean),
               "attacks": {}}
    worst = clean.copy()
    for name in attack_names:
        robust = clean & results[f"{name}/correct"].astype(bool)
        if name in worst_case_over:
            worst &= robust
        linf, l2 = results[f"{name}/linf"], results[f"{name}/l2"]
        summary["attacks"][name] = {
            "robust_accuracy": float(robust.mean()),
            "robust_count": int(robust.sum()),
            "robust_samples": pack_samples(robust),
            "mean_linf": float(linf.mean()),
            "max_linf": float(linf.max()),
            "mean_l2": float(l2.mean()),
            "max_l2": float(l2.max()),
            "seconds": float(results[f"{name}/seconds"][0]),
        }
    summary["worst_case"] = {"robust_accuracy": float(worst.mean()), "robust_count": int(worst.sum()),
                             "attacks": worst_case_over}
    return summary


def pack_samples(mask: np.ndarray) -> str:
    """A boolean per test image as hex text (1,000 images: 250 characters): the per-sample
    outcome a JSON report keeps, in the order of the test split."""
    return np.packbits(np.asarray(mask, dtype=bool)).tobytes().hex()


def unpack_samples(text: str, n: int) -> np.ndarray:
    """The inverse of :func:`pack_samples` for ``n`` images."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8), count=n).astype(bool)
