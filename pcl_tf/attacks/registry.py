"""Attack names -> functions, and the paper's default parameters per dataset (paper Sec. 5, Table 2).

Every attack is an :class:`Attack`: a function ``(model, x, y) -> x_adv`` with its parameters
bound, plus whether it needs the prototypes. Inputs and outputs are float32 images in [0, 1] and
``y`` holds the true labels; ``model`` is the logits-only twin for the CleverHans attacks and the
:class:`~pcl_tf.training.PCLModel` itself for the attacks that know the defence (``adaptive``,
``feature``). Paper settings (Table 2): ε = 0.3 for (F-)MNIST and 0.03 for CIFAR/SVHN; BIM, MIM and
PGD 10 iterations of ε/10 (PGD from a random start); C&W-L2 1000 iterations at learning rate
0.01 with initial constant c = 10 for (F-)MNIST and 0.1 for CIFAR/SVHN (one search round).

Strong attacks (Croce & Hein, ICML 2020), at the same ε, with AutoAttack's standard settings (Croce & Hein,
ICML 2020): APGD-CE 100 iterations, 1 restart; APGD-T (targeted DLR) 100 iterations on each of 9
target classes, 1 restart; Square 5000 queries, p_init 0.8; plus L∞ CE-PGD with 5 random restarts
of 10 steps of 2.5·ε/10. For APGD ``steps`` overrides the iterations (its step size is adaptive:
``step_size`` is not used); for Square it overrides the query budget.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Dict, Optional

from pcl_tf.attacks import adaptive, apgd, square
from pcl_tf.attacks import cleverhans_compat as ch

# Order of the paper's Table 2, then the attacks that know the defence.
PAPER_METHODS = ("fgsm", "bim", "cw", "mim", "pgd")
ADAPTIVE_METHODS = ("adaptive", "feature")
# AutoAttack's standard order (APGD-CE, APGD-T, Square), then PGD with random restarts.
STRONG_METHODS = ("apgd-ce", "apgd-t", "square", "pgd-restarts")
METHODS = PAPER_METHODS + ADAPTIVE_METHODS + STRONG_METHODS
NORMS = {"fgsm": "linf", "bim": "linf", "mim": "linf", "pgd": "linf", "cw": "l2", "adaptive": "linf", "feature": "linf",
         "apgd-ce": "linf", "apgd-t": "linf", "square": "linf", "pgd-restarts": "linf"}
_FUNCTIONS = {
    "fgsm": ch.fgsm, "bim": ch.bim, "mim": ch.mim, "pgd": ch.pgd, "cw": ch.cw_l2,
    "adaptive": adaptive.adaptive_pc, "feature": adaptive.feature_space,
    "apgd-ce": apgd.apgd_ce, "apgd-t": apgd.apgd_t, "square": square.square, "pgd-restarts": apgd.pgd_restarts,
}


@dataclasses.dataclass(frozen=True)
class Attack:
    name: str
    fn: Callable  # (model, x, y) -> x_adv
    needs_prototypes: bool
    # Run only on the images still robust to every attack before it (AutoAttack's sequence).
    cascade: bool = False
    # Stays inside the L-inf ε-ball, so it is part of the ε threat model: it counts in the
    # per-sample worst case and removes the images it breaks from a later cascade. C&W-L2 is
    # not: its perturbation is minimised in L2, not bounded by ε, so it is reported on its own.
    within_eps: bool = True

_SMALL_IMAGE_DATASETS = ("mnist", "fashion_mnist")


def paper_eps(dataset: str) -> float:
    return 0.3 if dataset in _SMALL_IMAGE_DATASETS else 0.03


def paper_c(dataset: str) -> float:
    return 10.0 if dataset in _SMALL_IMAGE_DATASETS else 0.1


def default_params(
    method: str,
    dataset: str,
    eps: Optional[float] = None,
    steps: Optional[int] = None,
    step_size: Optional[float] = None,
    c: Optional[float] = None,
) -> Dict[str, float]:
    """The paper's parameters for ``method`` on ``dataset``, with any given value overriding."""
    if method not in METHODS:
        raise ValueError(f"unknown attack {method!r}; choose one of {', '.join(METHODS)} or all")
    if method == "cw":
        return {
            "c": paper_c(dataset) if c is None else float(c),
            "steps": 1000 if steps is None else int(steps),
            "learning_rate": 0.01,
            # One run of 1000 iterations from the paper's c, not CleverHans' default of five
            # binary-search rounds (5000 iterations: ~0.1 image/s for CNN-6 on 2 CPU cores).
            "binary_search_steps": 1,
        }
    eps = paper_eps(dataset) if eps is None else float(eps)
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
    params = {
        "eps": eps,
        "steps": 10 if steps is None else int(steps),
        "step_size": eps / 10 if step_size is None else float(step_size),
    }
    return params


def make_attack(method: str, params: Dict[str, float], seed: Optional[int] = None) -> Attack:
    """Binds ``params`` (and the random-start ``seed``) to the attack function."""
    if method not in _FUNCTIONS:
        raise ValueError(f"unknown attack {method!r}; choose one of {', '.join(METHODS)} or all")
    kwargs = dict(params)
    if method in ("pgd",) + ADAPTIVE_METHODS + STRONG_METHODS and seed is not None:
        kwargs["seed"] = seed
    return Attack(method, functools.partial(_FUNCTIONS[method], **kwargs), method in ADAPTIVE_METHODS,
                  cascade=method in STRONG_METHODS, within_eps=NORMS[method] == "linf")
