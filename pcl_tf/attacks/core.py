"""The in-graph attack core: the pieces every gradient attack of pcl_tf is made of.

Pure TensorFlow, traceable inside a ``tf.function`` (and per replica under ``tf.distribute``),
so that adversarial training, the strong suite, the attacks that know the defence and the
gradient-masking audit all run the *same* code:

* geometry — :func:`project` (onto the ε-ball around the clean image, then onto [0, 1]),
  :func:`direction` (steepest ascent: sign for L∞, unit gradient for L2), :func:`random_start`;
* gradients — :func:`input_gradient`, :func:`logits_and_gradient`;
* steps — :func:`ascent_step`, :func:`fgsm`, :func:`pgd` (L∞, Madry et al., ICLR 2018);
* losses — :func:`cross_entropy`, :func:`margin` (true logit minus the best other one),
  :func:`dlr_targeted` (AutoAttack's DLR-T), :func:`joint_objective` (CE + branch CE + Σ PC, the
  PCL training objective).

APGD keeps its own step-size schedule and Square its own random search (``apgd.py``,
``square.py``); both use this module's projection, start and losses. Randomness: a shape-(2,)
integer ``seed`` draws statelessly (the same seed gives the same start in any process); no seed
draws from TensorFlow's global random state, as CleverHans does.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import tensorflow as tf

from pcl_tf.models import registry

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (x, y) -> scalar loss to maximise

_TINY = 1e-12
_NEVER = 1e30  # added to a logit or a distance that must never be chosen


# --------------------------------------------------------------------------- geometry


def per_sample(v):
    """A per-sample vector ``(N,)`` shaped to broadcast against images ``(N, H, W, C)``."""
    return tf.reshape(v, [-1, 1, 1, 1])


def l2_norm(v):
    """Per-sample L2 norm of an image batch."""
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=[1, 2, 3]))


def clip_to_images(x):
    return tf.clip_by_value(x, 0.0, 1.0)


def project(x, x_adv, eps, norm: str = "linf"):
    """Onto the ε-ball around ``x``, then onto [0, 1] (which keeps it inside the ball)."""
    delta = x_adv - x
    if norm == "linf":
        return clip_to_images(x + tf.clip_by_value(delta, -eps, eps))
    delta *= per_sample(tf.minimum(1.0, eps / (l2_norm(delta) + _TINY)))
    return clip_to_images(x + delta)


def direction(norm: str, grad):
    """The steepest-ascent direction of the norm: ``sign`` (L∞) or the unit gradient (L2)."""
    if norm == "linf":
        return tf.sign(grad)
    return grad / per_sample(l2_norm(grad) + _TINY)


def random_start(x, eps, seed=None, norm: str = "linf", radius=None):
    """A random point near ``x``, in [0, 1]: L∞ uniform noise of half-width ``radius`` (default
    ε; may exceed ε, as N-FGSM's start does), or for L2 a point on the ε-sphere projected back.
    ``seed`` a shape-(2,) integer tensor (stateless) or None (TF's global random state; L∞ only)."""
    if norm == "linf":
        radius = eps if radius is None else radius
        if seed is None:
            noise = tf.random.uniform(tf.shape(x), -radius, radius, dtype=x.dtype)
        else:
            noise = tf.random.stateless_uniform(tf.shape(x), seed, -radius, radius, dtype=x.dtype)
        return clip_to_images(x + noise)
    noise = tf.random.stateless_normal(tf.shape(x), seed)
    noise *= per_sample(eps / (l2_norm(noise) + _TINY))
    return project(x, x + noise, eps, norm)


# --------------------------------------------------------------------------- gradients


def input_gradient(loss_fn: LossFn, x, y):
    """∇ₓ loss_fn(x, y), outside any outer tape."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = loss_fn(x, y)
    return tf.stop_gradient(tape.gradient(loss, x))


def logits_and_gradient(logits_fn, per_sample_loss, x, y, *args):
    """``(logits, per-sample loss, ∇ₓ Σ loss)`` from one forward pass. Summing keeps each sample's
    gradient its own (samples are independent)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = logits_fn(x)
        losses = per_sample_loss(logits, y, *args)
        total = tf.reduce_sum(losses)
    return logits, tf.stop_gradient(losses), tf.stop_gradient(tape.gradient(total, x))


def misclassified(logits, y):
    return tf.argmax(logits, axis=1, output_type=tf.int32) != y


# --------------------------------------------------------------------------- steps


def ascent_step(x, x_adv, grad, step_size, eps, norm: str = "linf", stay_in_ball: bool = True):
    """One steepest-ascent step of ``step_size`` from ``x_adv``, then back into the ε-ball and
    [0, 1] (``stay_in_ball=False``: into [0, 1] only)."""
    x_adv = x_adv + step_size * direction(norm, grad)
    return project(x, x_adv, eps, norm) if stay_in_ball else clip_to_images(x_adv)


def fgsm(loss_fn: LossFn, x, y, eps) -> tf.Tensor:
    """``clip(x + eps * sign(grad_x loss), 0, 1)`` (Goodfellow et al., 2015); ``eps`` may be a tensor."""
    x = tf.convert_to_tensor(x)
    eps = tf.cast(eps, x.dtype)
    return clip_to_images(x + eps * tf.sign(input_gradient(loss_fn, x, y)))


def pgd(loss_fn: LossFn, x, y, eps, steps: int, step_size, random_start: bool = True, seed=None,
        start_radius=None, project: bool = True):
    """L∞ PGD (Madry et al., 2018) from a uniform random start; every iterate stays in the ε-ball
    (unless ``project=False``) and in [0, 1]. The iteration of CleverHans'
    ``projected_gradient_descent``, but ε and the step may be tensors and ``steps`` is unrolled.

    ``seed``: None draws the start from TensorFlow's global random state (as CleverHans does); a
    shape-(2,) integer tensor draws it statelessly, so that one compiled function gives a
    different, reproducible start per seed (random restarts).

    The single-step training attacks are this function with other settings, not other code:
    "fast" adversarial training (Wong, Rice & Kolter, ICLR 2020) is ``steps=1``,
    ``step_size=1.25 ε`` from the uniform start; N-FGSM (de Jorge et al., NeurIPS 2022) is
    ``steps=1``, ``step_size=ε``, ``start_radius=2 ε`` and ``project=False`` — its larger noise and
    unclipped step are what keep single-step training from catastrophic overfitting.
    ``start_radius`` (default ε) is the half-width of the uniform start.
    """
    x = tf.convert_to_tensor(x)
    eps = tf.cast(eps, x.dtype)
    step_size = tf.cast(step_size, x.dtype)
    radius = eps if start_radius is None else tf.cast(start_radius, x.dtype)
    x_adv = _start(x, eps, seed, radius=radius) if random_start else clip_to_images(x)
    for _ in range(int(steps)):  # unrolled: `steps` is a constant
        x_adv = ascent_step(x, x_adv, input_gradient(loss_fn, x_adv, y), step_size, eps, stay_in_ball=project)
    return tf.stop_gradient(x_adv)


_start = random_start  # pgd's argument `random_start` shadows the function's name inside it


# --------------------------------------------------------------------------- losses (per sample)


def cross_entropy(logits, y):
    """Per-sample cross-entropy, in float32 (mixed precision keeps logits in float16)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tf.cast(logits, tf.float32))


def mean_cross_entropy(logits, y):
    return tf.reduce_mean(cross_entropy(logits, y))


def without_true_class(values, y):
    """``values`` (N, K) with the true class's entry pushed to −∞ (for max / top-k over the others)."""
    return values - _NEVER * tf.one_hot(y, tf.shape(values)[1], dtype=values.dtype)


def margin(logits, y):
    """Per sample ``z_y − max_{j≠y} z_j``: negative exactly where the model is fooled."""
    logits = tf.cast(logits, tf.float32)
    true = tf.gather(logits, y, axis=1, batch_dims=1)
    return true - tf.reduce_max(without_true_class(logits, y), axis=1)


def _sorted_logits(logits, k):
    """The ``k`` largest logits per row, descending; rows shorter than ``k`` repeat their minimum."""
    classes = logits.shape[-1]
    top = tf.math.top_k(logits, k=min(k, classes)).values
    if classes < k:
        top = tf.concat([top, tf.repeat(top[:, -1:], k - classes, axis=1)], axis=1)
    return top


def dlr_targeted(logits, y, target):
    """Targeted DLR (Croce & Hein, 2020), per sample: ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)``
    with ``π`` the classes by decreasing logit (missing ones, under 4 classes, the smallest logit)."""
    logits = tf.cast(logits, tf.float32)
    true = tf.gather(logits, y, axis=1, batch_dims=1)
    goal = tf.gather(logits, target, axis=1, batch_dims=1)
    top = _sorted_logits(logits, 4)
    return -(true - goal) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _TINY)


def add_prototype_terms(model, outputs: Dict[str, tf.Tensor], y, total, pc_weight,
                        terms: Optional[Dict[str, tf.Tensor]] = None):
    """``total`` plus the PCL part of the objective: each branch CE head (Eq. 8, weighted
    ``model.branch_ce_weight``) and each PC term, all times ``pc_weight``. PC terms are recorded
    in ``terms`` (by layer name) when given. ``model`` is a :class:`pcl_tf.training.PCLModel`."""
    for name in model.aux_logit_names:
        total += model.branch_ce_weight * pc_weight * mean_cross_entropy(outputs[name], y)
    for name, layer in zip(model.feature_names, model.pc_layers):
        term = layer(outputs[name], y)
        if terms is not None:
            terms[layer.name] = term
        total += pc_weight * term
    return total


def joint_objective(model, x, y, pc_weight=1.0):
    """The PCL training objective CE + Σ branch CE + Σ_l L_PC^l at ``x``, in inference mode, with
    the PC terms on at ``pc_weight`` (the paper's adaptive attack, Table 3, maximises it)."""
    outputs = model.network(x, training=False)
    total = mean_cross_entropy(outputs[registry.LOGITS], y)
    return add_prototype_terms(model, outputs, y, total, pc_weight)
