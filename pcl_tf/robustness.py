"""Robustness evaluations of trained models: white-box, black-box, ε sweeps, transfer matrices.

The library behind ``pcl-attack``: each function takes explicit arguments and returns report
dicts (see :mod:`pcl_tf.report`); nothing here reads flags or prints.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import ml_collections
import tensorflow as tf

from pcl_tf import attacks, evaluation, journal, report


def usable_methods(model, methods: Sequence[str]) -> List[str]:
    """``methods`` less those the model cannot be attacked with (``feature`` needs prototypes)."""
    return [m for m in methods if not (m == "feature" and not model.pc_layers)]


def evaluate(
    target,
    config: ml_collections.ConfigDict,
    dataset: tf.data.Dataset,
    *,
    workdir: str,
    **kwargs,
) -> Dict:
    """Attacks one model at one ε (white-box, or black-box with ``source``); returns its report.
    Keyword arguments as for :func:`evaluate_many`."""
    return evaluate_many({workdir: (target, config)}, dataset, **kwargs)[0]


def evaluate_many(
    targets: Dict[str, tuple],
    dataset: tf.data.Dataset,
    *,
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
    journal_dir: Optional[str] = None,
    identity: Optional[Dict] = None,
) -> List[Dict]:
    """Attacks every model of ``targets`` (work dir -> (PCLModel, config)) at one ε.

    White-box: one target, attacked through its own gradients. Black-box (``source`` given):
    the images are crafted once on ``source`` and scored on every target. Every attack sees
    [0, 1] inputs and the true labels. Returns one report per target.

    With ``journal_dir`` the evaluation is resumable (:mod:`pcl_tf.journal`): a killed run,
    started again with the same arguments, continues after its last finished batch. The
    journal is keyed on the attacks, ε, seed and the work dirs plus ``identity`` — whatever
    else decides the result that only the caller knows (checkpoints, data, batch size) — and
    is left in place for the caller to remove once the report is safely written.
    """
    if source is None and len(targets) != 1:
        raise ValueError("white-box evaluation takes one target at a time")
    first_model, first_config = next(iter(targets.values()))
    crafted_on = source if source is not None else first_model
    methods = usable_methods(crafted_on, methods)
    params = {
        m: attacks.default_params(m, first_config.dataset, eps=eps, steps=steps, step_size=step_size, c=c)
        for m in methods
    }
    bound = [attacks.make_attack(m, params[m], seed=seed) for m in methods]
    models = {workdir: model for workdir, (model, _) in targets.items()}
    progress_journal = None
    if journal_dir:
        progress_journal = journal.EvaluationJournal(journal_dir, {
            "targets": list(targets), "source": source_workdir, "methods": methods, "params": params, "eps": eps,
            "seed": seed, "num_examples": num_examples, **(identity or {}),
        })
    results = evaluation.attack_dataset(
        models if source is not None else first_model, dataset, bound, source=source,
        progress=progress, num_examples=num_examples, journal=progress_journal,
    )
    if source is None:
        results = {next(iter(targets)): results}
    return [
        report.make_report(
            workdir=workdir,
            config=config,
            threat_model="black-box" if source is not None else "white-box",
            source=source_workdir,
            eps=eps,
            methods=methods,
            params=params,
            summary=evaluation.summarize(results[workdir], methods, [a.name for a in bound if a.within_eps]),
            seed=seed,
            cascade=[a.name for a in bound if a.cascade],
        )
        for workdir, (_, config) in targets.items()
    ]


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
