"""The two helpers of the public API that are not already a library function: reading a shipped
config by name, and evaluating a model in memory (no work dir, no report file).

Everything else ``pcl_tf`` exports is the library's own function (see ``pcl_tf/__init__.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Dict, Optional, Sequence

import ml_collections
import numpy as np


def get_config(name: str, variants: str = "") -> ml_collections.ConfigDict:
    """The config of a shipped config file (``"fmnist_cnn6"``, as in ``configs/fmnist_cnn6.py``)
    or of any config file by path, with ``variants`` (comma-separated: ``"quick,softmax"``)
    applied, exactly as ``pcl-train --config=<file>:<variants>`` reads it. Change fields on the
    returned ConfigDict (``config.train.epochs = 1``) as ``--config.train.epochs=1`` would."""
    if name.endswith(".py") or os.sep in name:
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(name))[0], name)
        if spec is None or not os.path.exists(name):
            raise FileNotFoundError(f"no config file {name}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(f"pcl_tf.configs.{name}")
    return module.get_config(variants)


def evaluate(model, dataset, methods: Sequence[str], *, config: ml_collections.ConfigDict,
             eps: Optional[float] = None, steps: Optional[int] = None, step_size: Optional[float] = None,
             c: Optional[float] = None, seed: int = 0, progress: bool = False) -> Dict:
    """Attacks ``model`` (a :class:`pcl_tf.training.PCLModel`) with ``methods`` (names of
    :data:`pcl_tf.attacks.METHODS`, with the paper's / AutoAttack's settings for
    ``config.dataset``, any given value overriding them) on every batch of ``dataset``
    (``(images, labels)`` batches, images in [0, 1]) at ``eps`` (default: the paper's ε).

    Returns the summary of :func:`pcl_tf.evaluation.summarize` — ``clean_accuracy``, per attack
    ``attacks[name]["robust_accuracy"]``, ``worst_case`` over the attacks inside the ε-ball — plus
    ``per_sample``: boolean arrays ``clean_correct``, ``<name>/correct`` and
    ``worst_case_correct`` (the image is classified correctly clean and after every attack)."""
    from pcl_tf import attacks, evaluation, robustness

    eps = attacks.paper_eps(config.dataset) if eps is None else float(eps)
    methods = robustness.usable_methods(model, methods)
    bound = [
        attacks.make_attack(m, attacks.default_params(m, config.dataset, eps=eps, steps=steps,
                                                      step_size=step_size, c=c), seed=seed)
        for m in methods
    ]
    inside = [a.name for a in bound if a.within_eps]
    results = evaluation.attack_dataset(model, dataset, bound, progress=progress)
    summary = evaluation.summarize(results, methods, inside)
    summary["eps"] = eps
    per_sample = {key: value.astype(bool) for key, value in results.items()
                  if key == "clean_correct" or key.endswith("/correct")}
    worst = per_sample["clean_correct"].copy()
    for name in inside:
        worst &= per_sample[f"{name}/correct"]
    per_sample["worst_case_correct"] = worst
    summary["per_sample"] = per_sample
    return summary
