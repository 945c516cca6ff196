"""Adversarial attacks: CleverHans TF2 (with Keras 3 fixes), PCL-aware adaptive attacks and the strong
attacks (APGD-CE, APGD-T, Square, PGD with restarts), one registry."""

from pcl_tf.attacks.registry import (  # noqa: F401
    ADAPTIVE_METHODS,
    METHODS,
    NORMS,
    PAPER_METHODS,
    STRONG_METHODS,
    Attack,
    default_params,
    make_attack,
    paper_c,
    paper_eps,
)
