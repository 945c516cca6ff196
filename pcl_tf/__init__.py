"""pcl_tf: the Prototype Conformity Loss (Mustafa et al., ICCV 2019) for TensorFlow/Keras 3, with
honest adversarial evaluation. The public Python API (see docs/python_api.md):

* building and training — :func:`get_config`, :func:`build_model`, :func:`train`,
  :func:`load_trained`; the loss layer :class:`PrototypeConformityLoss` and the model
  :class:`PCLModel`;
* attacks, plain functions ``attack(model, x, y, ...) -> x_adv`` of a Keras model returning
  logits (a :class:`PCLModel` does) and float32 images in [0, 1] — :func:`fgsm`, :func:`bim`,
  :func:`mim`, :func:`pgd`, :func:`cw_l2` (CleverHans), :func:`apgd_ce`, :func:`apgd_t`,
  :func:`square`, :func:`pgd_restarts`, and, given the PCLModel itself, :func:`adaptive_pc`,
  :func:`feature_space`;
* evaluation — :func:`evaluate` (clean, per-attack and per-sample worst-case accuracy of a model
  in memory); of work dirs, as ``pcl-attack`` does (reports written next to each model, the
  gradient-masking audit): :func:`evaluate_workdirs` with :class:`AttackSettings`,
  :func:`compare`, :func:`transfer_matrix`, :func:`plot_features`;
* export — :func:`export_saved_model` (:func:`pcl_tf.export.export`: a SavedModel for TF Serving)
  and :func:`export_workdir` (a work dir's model with its reports, as ``pcl-export``).

Names load on first use: ``import pcl_tf`` does not import TensorFlow (the commands start fast).
"""

import importlib

from pcl_tf._version import __version__  # noqa: F401

# Public name -> (module, attribute).
_EXPORTS = {
    "PrototypeConformityLoss": ("pcl_tf.losses", "PrototypeConformityLoss"),
    "PCLModel": ("pcl_tf.training", "PCLModel"),
    "get_config": ("pcl_tf.api", "get_config"),
    "build_model": ("pcl_tf.training_setup", "build_model"),
    "train": ("pcl_tf.experiment", "train_and_evaluate"),
    "load_trained": ("pcl_tf.workdir", "load_trained"),
    "evaluate": ("pcl_tf.api", "evaluate"),
    "AttackSettings": ("pcl_tf.evaluate_runs", "AttackSettings"),
    "evaluate_workdirs": ("pcl_tf.evaluate_runs", "evaluate_workdirs"),
    "compare": ("pcl_tf.evaluate_runs", "compare"),
    "transfer_matrix": ("pcl_tf.evaluate_runs", "transfer_matrix"),
    "plot_features": ("pcl_tf.evaluate_runs", "plot_features"),
    "export_saved_model": ("pcl_tf.export", "export"),
    "export_workdir": ("pcl_tf.export", "export_workdir"),
    "fgsm": ("pcl_tf.attacks.cleverhans_compat", "fgsm"),
    "bim": ("pcl_tf.attacks.cleverhans_compat", "bim"),
    "mim": ("pcl_tf.attacks.cleverhans_compat", "mim"),
    "pgd": ("pcl_tf.attacks.cleverhans_compat", "pgd"),
    "cw_l2": ("pcl_tf.attacks.cleverhans_compat", "cw_l2"),
    "apgd_ce": ("pcl_tf.attacks.apgd", "apgd_ce"),
    "apgd_t": ("pcl_tf.attacks.apgd", "apgd_t"),
    "pgd_restarts": ("pcl_tf.attacks.apgd", "pgd_restarts"),
    "square": ("pcl_tf.attacks.square", "square"),
    "adaptive_pc": ("pcl_tf.attacks.adaptive", "adaptive_pc"),
    "feature_space": ("pcl_tf.attacks.adaptive", "feature_space"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'pcl_tf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
