"""Adversarial attacks: CleverHans TF2 (with Keras 3 fixes) behind one registry."""

from pcl_tf.attacks.registry import METHODS, NORMS, default_params, make_attack, paper_c, paper_eps  # noqa: F401
