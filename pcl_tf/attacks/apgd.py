"""Auto-PGD (APGD-CE, APGD-T) and PGD with random restarts, in-graph and batched.

APGD is the step-size-free PGD of Croce & Hein, ICML 2020 ("Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks"), the first two attacks of
AutoAttack. Written here from the paper's Algorithm 1:

* a random start ``x⁰`` in the ε-ball (uniform for L∞; on the ε-sphere for L2), then
  ``steps`` iterations, each one gradient of the loss at the current iterate;
* initial step ``η = 2ε``; steepest ascent with momentum α = 0.75 (no momentum on the first
  step)::

      z      = P(xᵏ + η · s(∇f(xᵏ)))                  s = sign (L∞) or ∇/‖∇‖₂ (L2)
      xᵏ⁺¹   = P(xᵏ + α (z − xᵏ) + (1 − α)(xᵏ − xᵏ⁻¹))

  with ``P`` the projection onto the ε-ball around the clean image, then onto [0, 1];
* checkpoints ``w_j = ⌈p_j · steps⌉`` with ``p₀ = 0, p₁ = 0.22,
  p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``. At each checkpoint, per sample, the step is
  halved and the iteration restarts from the best point found so far when

  1. fewer than ρ = 0.75 of the iterations since the last checkpoint increased the loss over
     the previous iterate, or
  2. neither the step size nor the best loss changed since the last checkpoint;

* per sample, the best (highest-loss) point is kept, **and**, separately, the last iterate at
  which the model misclassified the sample: that one is returned wherever any iterate (or the
  random start) was adversarial. The per-sample worst case over attacks is only honest if an
  attack reports every success it saw.

``restarts`` runs from fresh random starts, each on the points still classified correctly (the
clean-misclassified ones are returned as they are). APGD-T (AutoAttack's targeted APGD with the
DLR loss) runs once per target class — the ``n_target_classes`` highest non-true logits at the
clean image — again only on the points still robust.

Losses (``z`` the logits, ``π`` the classes sorted by decreasing logit), from
:mod:`pcl_tf.attacks.core`:

* ``ce``: cross-entropy;
* ``dlr-t``: ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)`` for the target class ``t``.

With fewer than 4 classes the missing ``z_πk`` are taken as the smallest logit.

:func:`pgd_restarts` is L∞ CE-PGD (Madry et al., ICLR 2018) from several random starts, each on
the points not yet fooled, returning the first adversarial iterate seen per sample.

The projection, the random start, the steepest-ascent direction and the losses are the attack
core's (:mod:`pcl_tf.attacks.core`); APGD's step-size schedule and momentum are its own.
Each attack is compiled once per (model, attack, steps, image shape) — batch size free — and kept
while the model lives. Conventions are those of :mod:`pcl_tf.attacks.cleverhans_compat`:
``model_fn`` returns logits, ``x`` float32 in [0, 1], ``y`` the true labels; arguments are checked
eagerly (``ValueError``), so call these outside a ``tf.function``. Randomness comes from stateless
ops keyed on ``seed``: the same seed gives the same result, and TF's global seed is left alone.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from pcl_tf import compiled
from pcl_tf.attacks import core, validation

__all__ = ["apgd_ce", "apgd_t", "pgd_restarts", "checkpoints"]

NORMS = validation.NORMS
LOSSES = ("ce", "dlr-t")
MOMENTUM = 0.75  # α of the paper


def _per_sample_loss(kind, logits, y, target):
    if kind == "ce":
        return core.cross_entropy(logits, y)
    return core.dlr_targeted(logits, y, target)


def checkpoints(steps: int):
    """The iterations at which APGD may halve its step: ``⌈p_j · steps⌉`` for ``0 < p_j ≤ 1``."""
    p = [0.0, 0.22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if nxt > 1.0:
            break
        p.append(nxt)
    # round() first: 0.41 * 100 is 41.000000000000007 in floating point.
    return sorted({math.ceil(round(q * steps, 9)) for q in p[1:]} - {0})


# --------------------------------------------------------------------------- compiled runs


def _apgd_graph(model_fn, norm: str, loss: str, steps: int, image_shape):
    """A tf.function running one APGD restart on a batch; see the module docstring."""
    marks = checkpoints(steps)
    is_check = np.zeros(steps + 1, bool)
    window = np.zeros(steps + 1, np.float32)  # iterations since the previous checkpoint
    previous = 0
    for w in marks:
        is_check[w], window[w] = True, w - previous
        previous = w
    is_check, window = tf.constant(is_check), tf.constant(window)
    spec = tf.TensorSpec([None, *image_shape], tf.float32)
    labels = tf.TensorSpec([None], tf.int32)

    def loss_and_grad(x_adv, y, target):
        logits, per_sample, grad = core.logits_and_gradient(
            model_fn, lambda z, t, g: _per_sample_loss(loss, z, t, g), x_adv, y, target)
        return per_sample, grad, core.misclassified(logits, y)

    @tf.function(input_signature=[spec, labels, labels, tf.TensorSpec([], tf.float32),
                                  tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int32)])
    def run(x, y, target, eps, rho, seed):
        n = tf.shape(x)[0]
        x0 = core.random_start(x, eps, seed, norm)
        loss0, grad0, fooled = loss_and_grad(x0, y, target)
        x_adv_found = tf.where(core.per_sample(fooled), x0, x)
        eta = tf.fill([n], 2.0 * eps)
        state = dict(
            x_cur=x0, x_prev=x0, grad=grad0, loss_cur=loss0,
            x_best=x0, loss_best=loss0, grad_best=grad0,
            x_found=x_adv_found, fooled=fooled, eta=eta,
            increases=tf.zeros([n]), best_at_check=loss0, reduced_at_check=tf.zeros([n], tf.bool),
        )
        for k in tf.range(steps):
            s = state
            alpha = tf.where(k == 0, 1.0, MOMENTUM)
            z = core.project(x, s["x_cur"] + core.per_sample(s["eta"]) * core.direction(norm, s["grad"]), eps, norm)
            x_new = core.project(
                x, s["x_cur"] + alpha * (z - s["x_cur"]) + (1.0 - alpha) * (s["x_cur"] - s["x_prev"]), eps, norm
            )
            loss_new, grad_new, fooled_new = loss_and_grad(x_new, y, target)
            x_found = tf.where(core.per_sample(fooled_new), x_new, s["x_found"])
            increases = s["increases"] + tf.cast(loss_new > s["loss_cur"], tf.float32)
            better = loss_new > s["loss_best"]
            x_best = tf.where(core.per_sample(better), x_new, s["x_best"])
            grad_best = tf.where(core.per_sample(better), grad_new, s["grad_best"])
            loss_best = tf.where(better, loss_new, s["loss_best"])
            x_prev, x_cur, grad, loss_cur = s["x_cur"], x_new, grad_new, loss_new
            eta, best_at_check, reduced_at_check = s["eta"], s["best_at_check"], s["reduced_at_check"]
            if is_check[k + 1]:
                too_few = increases < rho * window[k + 1]  # condition 1
                stalled = tf.logical_and(~reduced_at_check, loss_best <= best_at_check)  # condition 2
                reduce = tf.logical_or(too_few, stalled)
                eta = tf.where(reduce, eta / 2.0, eta)
                back = core.per_sample(reduce)
                x_cur = tf.where(back, x_best, x_cur)
                x_prev = tf.where(back, x_best, x_prev)  # no momentum out of a restart
                grad = tf.where(back, grad_best, grad)
                loss_cur = tf.where(reduce, loss_best, loss_cur)
                reduced_at_check, best_at_check = reduce, loss_best
                increases = tf.zeros_like(increases)
            state = dict(
                x_cur=x_cur, x_prev=x_prev, grad=grad, loss_cur=loss_cur,
                x_best=x_best, loss_best=loss_best, grad_best=grad_best,
                x_found=x_found, fooled=tf.logical_or(s["fooled"], fooled_new), eta=eta,
                increases=increases, best_at_check=best_at_check, reduced_at_check=reduced_at_check,
            )
        x_out = tf.where(core.per_sample(state["fooled"]), state["x_found"], state["x_best"])
        return x_out, state["loss_best"], state["fooled"]

    return run


def _pgd_graph(model_fn, steps: int, image_shape):
    """A tf.function running one L∞ CE-PGD restart (the core's start and step), keeping the
    first adversarial iterate."""
    spec = tf.TensorSpec([None, *image_shape], tf.float32)

    @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.float32),
                                  tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int32)])
    def run(x, y, eps, step_size, seed):
        x_adv = core.random_start(x, eps, seed)
        x_found = x
        fooled = tf.zeros([tf.shape(x)[0]], tf.bool)
        for _ in tf.range(steps):
            logits, _, grad = core.logits_and_gradient(model_fn, core.cross_entropy, x_adv, y)
            first = tf.logical_and(core.misclassified(logits, y), ~fooled)
            x_found = tf.where(core.per_sample(first), x_adv, x_found)
            fooled = tf.logical_or(fooled, first)
            x_adv = core.ascent_step(x, x_adv, grad, step_size, eps)
        last = tf.logical_and(core.misclassified(model_fn(x_adv), y), ~fooled)
        x_found = tf.where(core.per_sample(last), x_adv, x_found)
        fooled = tf.logical_or(fooled, last)
        return tf.where(core.per_sample(fooled), x_found, x_adv), fooled

    return run


# --------------------------------------------------------------------------- public attacks


def _apgd(model_fn, x, y, eps, steps, restarts, norm, seed, rho, loss, n_target_classes=None):
    """Validated APGD; returns ``(x_adv, fooled)`` — the adversarial tensor and, per sample, whether
    any iterate of any run misclassified it (clean mistakes count as fooled)."""
    norm = validation.check_norm(norm)
    eps = validation.check_radius(eps, norm)
    steps = validation.check_positive_int("steps", steps)
    restarts = validation.check_positive_int("restarts", restarts)
    rho = validation.check_fraction("rho", rho)
    seed = validation.draw_seed(seed)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    x, y = validation.check_x_y(x, y)
    logits = model_fn(x)
    classes = int(logits.shape[-1])
    if int(tf.reduce_max(y)) >= classes:
        raise ValueError(f"labels must be < the model's {classes} classes, got {int(tf.reduce_max(y))}")

    if loss == "dlr-t":
        n_target_classes = min(validation.check_positive_int("n_target_classes", n_target_classes), classes - 1)
        masked = core.without_true_class(tf.cast(logits, tf.float32), y)
        targets = tf.math.top_k(masked, k=n_target_classes).indices.numpy().astype(np.int32)
    else:
        targets = np.zeros((x.shape[0], 1), np.int32)

    graph = compiled.once_per(model_fn, ("apgd", norm, loss, steps, tuple(x.shape[1:])),
                              lambda: _apgd_graph(model_fn, norm, loss, steps, tuple(x.shape[1:])))
    x_np, y_np = x.numpy(), y.numpy()
    out = x_np.copy()
    fooled = tf.argmax(logits, axis=1, output_type=tf.int32).numpy() != y_np  # clean mistakes: done
    best = np.full(len(x_np), -np.inf, np.float32)  # best loss of the points not fooled
    for t in range(targets.shape[1]):
        for r in range(restarts):
            idx = np.flatnonzero(~fooled)  # every run only on the points still robust
            if idx.size == 0:
                break
            x_adv, loss_best, hit = graph(
                tf.constant(x_np[idx]), tf.constant(y_np[idx]), tf.constant(targets[idx, t]),
                tf.constant(eps, tf.float32), tf.constant(rho, tf.float32),
                tf.constant([seed, 1000 * t + r], tf.int32),
            )
            x_adv, loss_best, hit = x_adv.numpy(), loss_best.numpy(), hit.numpy()
            keep = hit | (loss_best > best[idx])  # an adversarial point, else the highest loss seen
            out[idx[keep]] = x_adv[keep]
            best[idx] = np.maximum(best[idx], loss_best)
            fooled[idx[hit]] = True
    return tf.constant(out), fooled


def apgd_ce(model_fn, x, y, eps, steps=100, restarts=1, norm="linf", seed=None, rho=0.75):
    """APGD on the cross-entropy (AutoAttack's first attack): ``restarts`` runs of ``steps``
    iterations, L∞ or L2 ball of radius ``eps``. Returns float32 ``x_adv`` in the ball and [0, 1]."""
    return _apgd(model_fn, x, y, eps, steps, restarts, norm, seed, rho, "ce")[0]


def apgd_t(model_fn, x, y, eps, steps=100, n_target_classes=9, restarts=1, norm="linf", seed=None, rho=0.75):
    """Targeted APGD on the DLR-T loss (AutoAttack's second attack): for each of the
    ``n_target_classes`` (at most classes − 1) highest non-true classes at the clean image,
    ``restarts`` runs of ``steps`` iterations on the points still robust. Succeeds on any
    misclassification, not only as the target."""
    return _apgd(model_fn, x, y, eps, steps, restarts, norm, seed, rho, "dlr-t", n_target_classes)[0]


def pgd_restarts(model_fn, x, y, eps, steps=10, step_size=None, restarts=5, seed=None):
    """L∞ CE-PGD from ``restarts`` uniform random starts, each on the samples not fooled yet;
    ``step_size`` defaults to 2.5·ε/steps (Madry et al.). Returns per sample the first
    adversarial iterate found, else the last iterate of the last restart."""
    eps = validation.check_eps(eps)
    steps = validation.check_positive_int("steps", steps)
    step_size = 2.5 * eps / steps if step_size is None else validation.check_step_size(step_size, eps)
    restarts = validation.check_positive_int("restarts", restarts)
    seed = validation.draw_seed(seed)
    x, y = validation.check_x_y(x, y)
    shape = tuple(x.shape[1:])
    graph = compiled.once_per(model_fn, ("pgd-restarts", steps, shape), lambda: _pgd_graph(model_fn, steps, shape))
    x_np, y_np = x.numpy(), y.numpy()
    out = x_np.copy()
    fooled = np.zeros(len(x_np), bool)
    for r in range(restarts):
        idx = np.flatnonzero(~fooled)
        if idx.size == 0:
            break
        x_adv, hit = graph(tf.constant(x_np[idx]), tf.constant(y_np[idx]), tf.constant(eps, tf.float32),
                           tf.constant(step_size, tf.float32), tf.constant([seed, r], tf.int32))
        out[idx] = x_adv.numpy()
        fooled[idx[hit.numpy()]] = True
    return tf.constant(out)
