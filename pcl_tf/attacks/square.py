"""Square Attack, L∞ (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020, "Square Attack: a
query-efficient black-box adversarial attack via random search"), AutoAttack's gradient-free
member: it needs only the logits, so it sees through gradient masking.

Random search on the margin loss ``z_y − max_{j≠y} z_j`` (a sample is fooled once it is < 0),
written here from the paper:

* start: vertical stripes, ``x + ε · (±1)`` with one random sign per column and channel, clipped
  to [0, 1];
* each iteration, per sample not yet fooled: a square window of side
  ``s = round(sqrt(p · H · W))`` (1 ≤ s ≤ H − 1) at a random position gets a new value of ±ε per
  channel — the rest of the perturbation is kept — resampled while it would leave the image
  unchanged; the candidate is kept if it lowers the margin;
* ``p`` starts at ``p_init`` and is halved at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000
  and 8000 of a 10 000-query budget, rescaled to ``queries``.

``queries`` counts model evaluations per sample, the start included; samples already fooled are
not queried again, and clean mistakes are returned unchanged. The search runs in NumPy, batched
over the samples (windows placed with broadcast masks), around a forward pass compiled once per
model and image shape. ``seed`` seeds a NumPy generator: the same seed gives the same result.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from pcl_tf import compiled
from pcl_tf.attacks import core, validation

__all__ = ["square", "p_schedule"]

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of a 10 000-query run
_RESAMPLE_TRIES = 32


def p_schedule(p_init: float, iteration: int, queries: int) -> float:
    """The fraction of pixels changed at ``iteration`` (the paper's schedule, rescaled)."""
    scaled = int(iteration / queries * 10000)
    return p_init / 2 ** sum(scaled > h for h in _HALVINGS)


def _margin_fn(model_fn, image_shape):
    """:func:`pcl_tf.attacks.core.margin` of the model's logits, compiled once per image shape."""

    def build():
        @tf.function(input_signature=[tf.TensorSpec([None, *image_shape], tf.float32),
                                      tf.TensorSpec([None], tf.int32)])
        def margin(x, y):
            return core.margin(model_fn(x), y)

        return margin

    return compiled.once_per(model_fn, ("square-margin", image_shape), build)


def square(model_fn, x, y, eps, queries=5000, p_init=0.8, seed=None):
    """Square Attack L∞ with at most ``queries`` model evaluations per sample; returns float32
    ``x_adv`` within ``eps`` of ``x`` and in [0, 1]: the first point found that fools the model,
    else the lowest-margin point seen."""
    eps = validation.check_eps(eps)
    queries = validation.check_positive_int("queries", queries)
    p_init = validation.check_fraction("p_init", p_init)
    validation.check_optional_seed(seed)
    x, y = validation.check_x_y(x, y)
    rng = np.random.default_rng(seed)
    x_np, y_np = x.numpy(), y.numpy()
    n, h, w, c = x_np.shape
    margin_of = _margin_fn(model_fn, (h, w, c))

    def margins(idx, images):
        return margin_of(tf.constant(images), tf.constant(y_np[idx])).numpy()

    x_best = x_np.copy()
    margin = margins(np.arange(n), x_np)
    todo = np.flatnonzero(margin > 0)  # clean mistakes are done already
    if todo.size == 0 or eps == 0.0:
        return tf.constant(x_best)

    stripes = eps * rng.choice(np.float32([-1.0, 1.0]), size=(todo.size, 1, w, c))
    x_best[todo] = np.clip(x_np[todo] + stripes, 0.0, 1.0)
    margin[todo] = margins(todo, x_best[todo])
    rows, cols = np.arange(h), np.arange(w)

    for i in range(1, queries):
        idx = np.flatnonzero(margin > 0)
        if idx.size == 0:
            break
        m = idx.size
        x_clean, current = x_np[idx], x_best[idx]
        side = int(round(math.sqrt(p_schedule(p_init, i, queries) * h * w)))
        side = min(max(side, 1), h - 1, w - 1)
        top = rng.integers(0, h - side + 1, m)
        left = rng.integers(0, w - side + 1, m)
        window = (((rows >= top[:, None]) & (rows < top[:, None] + side))[:, :, None]
                  & ((cols >= left[:, None]) & (cols < left[:, None] + side))[:, None, :])[..., None]
        delta = current - x_clean
        candidate = current
        pending = np.arange(m)
        for _ in range(_RESAMPLE_TRIES):  # resample the windows that would change nothing
            signs = eps * rng.choice(np.float32([-1.0, 1.0]), size=(pending.size, 1, 1, c))
            trial = np.clip(x_clean[pending] + np.where(window[pending], signs, delta[pending]), 0.0, 1.0)
            if pending.size == m:
                candidate = trial
            else:
                candidate[pending] = trial
            same = np.all((np.abs(trial - current[pending]) < 1e-7) | ~window[pending], axis=(1, 2, 3))
            pending = pending[same]
            if pending.size == 0:
                break
        new_margin = margins(idx, candidate)
        better = new_margin < margin[idx]
        x_best[idx[better]] = candidate[better]
        margin[idx[better]] = new_margin[better]
    return tf.constant(x_best)
