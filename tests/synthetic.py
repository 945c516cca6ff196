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
