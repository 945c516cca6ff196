"""Argument checks shared by every attack: one-line ``ValueError`` before any work is done.

The attacks read the values of ``x`` here (range, dtype, shape), so they are called eagerly,
not inside a ``tf.function``. Kept apart from the attacks so that no attack has to import
another attack's module (least of all the CleverHans wrappers) for its checks.
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

CLIP_MIN = 0.0
CLIP_MAX = 1.0
NORMS = ("linf", "l2")


def check_x_y(x, y):
    """Return ``(x, y)`` as tensors (float32 images in [0, 1], int32 labels) or raise ValueError."""
    dtype = x.dtype if isinstance(x, (tf.Tensor, tf.Variable)) else getattr(x, "dtype", None)
    if dtype is None or tf.as_dtype(dtype) != tf.float32:
        raise ValueError(f"x must be float32, got dtype {dtype}")
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 4 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty rank-4 batch (N, H, W, C), got {tuple(x.shape)}")
    x_min, x_max = float(tf.reduce_min(x)), float(tf.reduce_max(x))
    if not (CLIP_MIN <= x_min and x_max <= CLIP_MAX):  # also rejects NaN
        raise ValueError(f"x must lie in [0, 1], got values in [{x_min:g}, {x_max:g}]")
    y_np = np.asarray(y)
    if y_np.shape != (x.shape[0],):
        raise ValueError(
            f"y must be integer labels of shape ({x.shape[0]},) to match x, got shape {y_np.shape}"
        )
    if not np.issubdtype(y_np.dtype, np.integer) or (y_np < 0).any():
        raise ValueError(f"y must hold non-negative integer class labels, got dtype {y_np.dtype}")
    return x, tf.constant(y_np, dtype=tf.int32)


def check_eps(eps):
    """An L∞ radius: a number in [0, 1] (pixel units)."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must be a number in [0, 1] (pixel units), got {eps!r}")
    return float(eps)


def check_norm(norm):
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


def check_radius(eps, norm):
    """L∞: :func:`check_eps` (a number in [0, 1]); L2: any non-negative number."""
    if norm == "linf":
        return check_eps(eps)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise ValueError(f"eps must be a non-negative number (L2 radius, pixel units), got {eps!r}")
    return float(eps)


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_step_size(step_size, eps):
    # step_size 0 is accepted only with eps 0 ("no attack"): a default step of eps/10 is then 0.
    if eps == 0.0 and isinstance(step_size, numbers.Real) and not isinstance(step_size, bool):
        if step_size == 0:
            return 0.0
    return check_positive("step_size", step_size)


def check_fraction(name, value):
    """A number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def check_optional_seed(seed):
    """An integer or None, returned unchanged."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    return seed


def draw_seed(seed):
    """An int seed for stateless ops: ``seed`` itself (mod 2³¹ − 1), or a fresh one for None."""
    if seed is None:
        return int(np.random.default_rng().integers(2**31 - 1))
    check_optional_seed(seed)
    return int(seed) % (2**31 - 1)
