"""Robustness evaluations of trained models: white-box, black-box, ε sweeps, transfer matrices.

The library behind ``pcl-attack``: each function takes explicit arguments and returns report
dicts (see :mod:`pcl_tf.report`); nothing here reads flags or prints.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import ml_collections
import tensorflow as tf

from pcl_tf import attacks, evaluation, report


def usable_methods(model, methods: Sequence[str]) -> List[str]:
    """``methods`` less those the model cannot be attacked with (``feature`` needs prototypes)."""
    return [m for m in methods if not (m == "feature" and not model.pc_layers)]


def evaluate(
    target,
    config: ml_collections.ConfigDict,
    dataset: tf.data.Dataset,
    *,
    workdir: str,
    methods: Sequence[str],
    eps: float,
    steps: Optional[int] = None,
    step_size: Optional[float] = None,
    c: Optional[float] = None,
    seed: int = 0,
    source=None,
    source_workdir: Optional[str] = None,
    progress: bool = True,
    num_examples: Optional[int] = None,
) -> Dict:
    """Attacks ``target`` with every method at one ε; returns the report dict.

    With ``source`` the examples are crafted on that model (black-box / transfer) and scored on
    ``target``. Every attack sees [0, 1] inputs and the true labels.
    """
    crafted_on = source if source is not None else target
    methods = usable_methods(crafted_on, methods)
    params = {
        m: attacks.default_params(m, config.dataset, eps=eps, steps=steps, step_size=step_size, c=c)
        for m in methods
    }
    bound = [attacks.make_attack(m, params[m], seed=seed) for m in methods]
    results = evaluation.attack_dataset(
        target, dataset, bound, source=source, progress=progress, num_examples=num_examples
    )
    summary = evaluation.summarize(results, methods)
    return report.make_report(
        workdir=workdir,
        config=config,
        threat_model="black-box" if source is not None else "white-box",
        source=source_workdir,
        eps=eps,
        methods=methods,
        params=params,
        summary=summary,
        seed=seed,
    )


def transfer_matrix(
    models: Dict[str, object], dataset: tf.data.Dataset, attack: "attacks.Attack"
) -> Dict[str, Dict[str, float]]:
    """Paper Table 6: accuracy of every target on adversarial examples crafted on every source.

    ``models`` maps a name to a PCLModel; the diagonal is the white-box accuracy. A sample
    counts as correct when the target classifies both its clean and its adversarial image
    correctly (as in :func:`pcl_tf.evaluation.summarize`).
    """
    if attack.needs_prototypes:
        raise ValueError(f"{attack.name} needs the attacked model's prototypes; use a CleverHans attack")
    logits = {name: model.inference_model() for name, model in models.items()}
    correct = {s: {t: 0 for t in models} for s in models}
    seen = 0
    for x, y in dataset:
        y = tf.cast(y, tf.int32)
        clean_ok = {t: tf.argmax(f(x), axis=1, output_type=tf.int32) == y for t, f in logits.items()}
        for source, source_logits in logits.items():
            x_adv = attack.fn(source_logits, x, y)
            for target, target_logits in logits.items():
                ok = clean_ok[target] & (tf.argmax(target_logits(x_adv), axis=1, output_type=tf.int32) == y)
                correct[source][target] += int(tf.reduce_sum(tf.cast(ok, tf.int32)))
        seen += int(x.shape[0])
    return {s: {t: correct[s][t] / seen for t in models} for s in models}


def penultimate_model(model):
    """The features that enter the logits layer (``fc_logits``), for softmax and PCL alike."""
    import keras

    network = model.network
    return keras.Model(network.input, network.get_layer("fc_logits").input)


def feature_projection(model, x, x_adv, labels, title: str) -> Dict:
    """Fig. 1 panel: penultimate features of clean and attacked images, projected to 2-D with
    the PCA of the clean features (so both share one map)."""
    import numpy as np

    features = penultimate_model(model)
    clean = features(x).numpy()
    adversarial = features(x_adv).numpy()
    mean = clean.mean(axis=0)
    _, _, vt = np.linalg.svd(clean - mean, full_matrices=False)
    basis = vt[:2].T
    return {
        "title": title,
        "clean": (clean - mean) @ basis,
        "adversarial": (adversarial - mean) @ basis,
        "labels": np.asarray(labels),
    }
