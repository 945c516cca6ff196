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
