"""The attack table (pcl_tf.attacks.registry): the lists, defaults and bound attacks derived from
it are the ones pcl-attack has always used, and the table agrees with what the report prints."""

import subprocess
import sys

import pytest

from pcl_tf import attacks, report
from pcl_tf.attacks import registry

DATASETS = ("mnist", "fashion_mnist", "cifar10", "svhn")


def former_default_params(method, dataset, eps=None, steps=None, step_size=None, c=None):
    """registry.default_params before the table (commit 5a07d62), for comparison."""
    small = dataset in ("mnist", "fashion_mnist")
    if method == "cw":
        return {"c": (10.0 if small else 0.1) if c is None else float(c), "steps": 1000 if steps is None else int(steps),
                "learning_rate": 0.01, "binary_search_steps": 1}
    eps = (0.3 if small else 0.03) if eps is None else float(eps)
    if method == "fgsm":
        return {"eps": eps}
    if method == "apgd-ce":
        return {"eps": eps, "steps": 100 if steps is None else int(steps), "restarts": 1}
    if method == "apgd-t":
        return {"eps": eps, "steps": 100 if steps is None else int(steps), "n_target_classes": 9, "restarts": 1}
    if method == "square":
        return {"eps": eps, "queries": 5000 if steps is None else int(steps), "p_init": 0.8}
    if method == "pgd-restarts":
        steps = 10 if steps is None else int(steps)
        return {"eps": eps, "steps": steps, "step_size": 2.5 * eps / steps if step_size is None else float(step_size),
                "restarts": 5}
    return {"eps": eps, "steps": 10 if steps is None else int(steps),
            "step_size": eps / 10 if step_size is None else float(step_size)}


def test_method_lists_and_norms():
    assert attacks.PAPER_METHODS == ("fgsm", "bim", "cw", "mim", "pgd")
    assert attacks.ADAPTIVE_METHODS == ("adaptive", "feature")
    assert attacks.STRONG_METHODS == ("apgd-ce", "apgd-t", "square", "pgd-restarts")
    assert attacks.AUTOATTACK_METHODS == ("apgd-ce", "apgd-t", "square")  # pcl-attack --suite=standard
    assert attacks.METHODS == attacks.PAPER_METHODS + attacks.ADAPTIVE_METHODS + attacks.STRONG_METHODS
    assert attacks.NORMS == {m: "l2" if m == "cw" else "linf" for m in attacks.METHODS}


@pytest.mark.parametrize("method", registry.METHODS)
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("overrides", [{}, dict(eps=0.1, steps=7, step_size=0.02, c=3.0)])
def test_defaults_per_dataset_are_the_former_ones(method, dataset, overrides):
    assert attacks.default_params(method, dataset, **overrides) == former_default_params(method, dataset, **overrides)


@pytest.mark.parametrize("method", registry.METHODS)
def test_bound_attacks_keep_their_flags_and_seed(method):
    attack = attacks.make_attack(method, {"eps": 0.1}, seed=3)
    assert attack.needs_prototypes == (method in ("adaptive", "feature"))
    assert attack.cascade == (method in attacks.STRONG_METHODS)
    assert attack.within_eps == (method != "cw")
    takes_seed = method in ("pgd",) + attacks.ADAPTIVE_METHODS + attacks.STRONG_METHODS
    assert ("seed" in attack.fn.keywords) == takes_seed


def test_unknown_attack_is_refused():
    for call in (lambda: attacks.default_params("spsa", "mnist"), lambda: attacks.make_attack("spsa", {})):
        with pytest.raises(ValueError, match="unknown attack 'spsa'"):
            call()


def test_labels_are_unique_and_the_report_reads_them_from_the_table():
    assert len(set(registry.LABELS.values())) == len(registry.LABELS)
    assert report.LABELS is registry.LABELS
    assert report.PAPER_COLUMNS + report.STRONG_COLUMNS == registry.METHODS  # every attack has its column


def test_reading_the_table_imports_no_tensorflow():
    """pcl-attack builds its flags and --help from the table before TensorFlow loads."""
    code = ("import sys; from pcl_tf import attacks; attacks.METHODS, attacks.LABELS, attacks.default_params('pgd', 'mnist'); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    assert out == "False"
