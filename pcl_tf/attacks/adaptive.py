"""Attacks that know the defence: they see the prototypes, not only the logits.

A defence is only as good as the best attack that knows it (Athalye et al., ICML 2018; Tramèr
et al., NeurIPS 2020). Two attacks aimed at PCL, both L∞ PGD from a random start (:func:`pcl_tf.attacks.core.pgd`,
the iteration adversarial training uses) with a different objective:

* ``adaptive`` — the paper's adaptive white-box attack (Table 3): maximise the whole training
  objective CE + Σ branch CE + Σ_l L_PC^l (:func:`pcl_tf.attacks.core.joint_objective`, the very
  function training computes its loss with), with the prototypes known. Against a softmax model
  it is CE-PGD.
* ``feature`` — a feature-space attack: pull every supervised feature f_l(x) to the prototype
  of the *nearest wrong class* (chosen per image on the deepest layer at the clean image),
  i.e. maximise −Σ_l ||f_l(x) − w^l_t||. It aims at exactly what PCL claims to protect: the
  separation of the class regions in feature space. Needs prototypes.

Both take the :class:`pcl_tf.training.PCLModel` and run in inference mode.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from pcl_tf import compiled, losses
from pcl_tf.attacks import core, validation


def _compiled_pgd(model, objective, steps: int):
    """One tf.function per (model, objective, steps), kept while the model lives: tracing
    anew for every batch would cost more than the attack itself."""

    def build():
        @tf.function(reduce_retracing=True)
        def run(x, y, target, eps, step_size, seed):
            return core.pgd(lambda v, t: objective(model, v, t, target), x, y, eps, steps, step_size, seed=seed)

        return run

    return compiled.once_per(model, ("adaptive", objective.__name__, steps), build)


def _joint_objective(model, x, y, target):
    """The training objective, PC terms (and branch CE heads) on regardless of the warm-up switch."""
    return core.joint_objective(model, x, y, pc_weight=1.0)


def _feature_objective(model, x, y, target):
    """−Σ_l mean ||f_l(x) − w^l_target||: larger as the features reach the target prototypes."""
    outputs = model.network(x, training=False)
    total = 0.0
    for name, layer in zip(model.feature_names, model.pc_layers):
        goal = tf.gather(tf.convert_to_tensor(layer.prototypes), target)
        total -= tf.reduce_mean(tf.norm(tf.cast(outputs[name], tf.float32) - goal + 1e-12, axis=1))
    return total


def nearest_wrong_prototype(model, x, y) -> tf.Tensor:
    """Per image, the class ≠ y whose prototype is nearest to the deepest supervised feature."""
    layer, name = model.pc_layers[-1], model.feature_names[-1]
    features = model.network(x, training=False)[name]
    return losses.nearest_prototype(features, layer.prototypes, excluded=y)


def _run(model, objective, x, y, eps, steps, step_size, seed: Optional[int]):
    eps = validation.check_eps(eps)
    steps = validation.check_positive_int("steps", steps)
    step_size = validation.check_step_size(step_size, eps)
    x, y = validation.check_x_y(x, y)
    y = tf.cast(y, tf.int32)
    # A stateless random start from (seed, 0): the same seed gives the same start in any process
    # and whatever ran before (no seed: a fresh draw every call).
    seed = tf.constant([int(seed), 0]) if seed is not None else tf.random.uniform([2], 0, 2**31 - 1, tf.int32)
    target = nearest_wrong_prototype(model, x, y) if objective is _feature_objective else tf.zeros_like(y)
    run = _compiled_pgd(model, objective, steps)
    return run(x, y, target, tf.constant(eps, tf.float32), tf.constant(step_size, tf.float32), seed)


def adaptive_pc(model, x, y, eps, steps, step_size, seed=None):
    """PGD maximising CE + Σ_l L_PC^l with the prototypes known (the paper's Table 3)."""
    return _run(model, _joint_objective, x, y, eps, steps, step_size, seed)


def feature_space(model, x, y, eps, steps, step_size, seed=None):
    """PGD driving every supervised feature to the nearest wrong class's prototype."""
    if not model.pc_layers:
        raise ValueError("the feature-space attack needs prototypes; this model has no PCL branch")
    return _run(model, _feature_objective, x, y, eps, steps, step_size, seed)
