"""Adversarial attacks: CleverHans TF2 (with Keras 3 fixes) and PCL-aware adaptive attacks, one registry."""

from pcl_tf.attacks.registry import (  # noqa: F401
    ADAPTIVE_METHODS,
    METHODS,
    NORMS,
    PAPER_METHODS,
    Attack,
    default_params,
    make_attack,
    paper_c,
    paper_eps,
)
