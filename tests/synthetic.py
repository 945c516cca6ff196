"""Small, learnable synthetic image data shared by the attack and evaluation tests."""

import numpy as np


def stripes(n, seed, classes=3):
    """28x28x1 images of ``classes`` stripe patterns (horizontal, vertical, diagonal) under
    Gaussian noise, in [0, 1], with int32 labels. A tiny CNN learns it to ~100 % in a second and,
    undefended, is easy to fool at ε = 0.3."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    rows, cols = np.mgrid[0:28, 0:28]
    patterns = np.stack([rows % 6 < 3, cols % 6 < 3, (rows + cols) % 8 < 4]).astype(np.float32)[:classes]
    x = 0.3 + 0.35 * patterns[y] + rng.normal(0.0, 0.12, (n, 28, 28))
    return np.clip(x, 0.0, 1.0)[..., None].astype(np.float32), y.astype(np.int32)


def robust_and_non_robust(n, seed):
    """Two classes, sign s. The left half carries the label robustly but noisily
    (0.5 ± 0.25 + N(0, 0.25) per pixel); the right half carries it perfectly but with an
    amplitude of 0.04, which any ε > 0.04 erases. Plain training leans on the right half."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    s = (2 * y - 1)[:, None, None]
    x = np.empty((n, 8, 8), np.float32)
    x[:, :, :4] = 0.5 + 0.25 * s + rng.normal(0, 0.25, (n, 8, 4))
    x[:, :, 4:] = 0.5 + 0.04 * s + rng.normal(0, 0.005, (n, 8, 4))
    return np.clip(x, 0, 1)[..., None], y
