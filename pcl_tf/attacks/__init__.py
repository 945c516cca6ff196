"""Adversarial attacks: CleverHans TF2 (with Keras 3 fixes), PCL-aware adaptive attacks and the strong
attacks (APGD-CE, APGD-T, Square, PGD with restarts) on one in-graph core (:mod:`.core`), one registry.

The registry's names (``attacks.METHODS``, ``attacks.make_attack``, ...) load on first use, so
that importing :mod:`pcl_tf.attacks.core` (as adversarial training does) does not import
CleverHans and every attack with it.
"""

import importlib

_REGISTRY_NAMES = (
    "ADAPTIVE_METHODS",
    "AUTOATTACK_METHODS",
    "BY_NAME",
    "LABELS",
    "SPECS",
    "AttackSpec",
    "METHODS",
    "NORMS",
    "PAPER_METHODS",
    "STRONG_METHODS",
    "Attack",
    "default_params",
    "make_attack",
    "paper_c",
    "paper_eps",
)
__all__ = list(_REGISTRY_NAMES)


def __getattr__(name):
    if name in _REGISTRY_NAMES:
        return getattr(importlib.import_module("pcl_tf.attacks.registry"), name)
    raise AttributeError(f"module 'pcl_tf.attacks' has no attribute {name!r}")
