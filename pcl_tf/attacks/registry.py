"""The attack table: one :class:`AttackSpec` per attack, and everything else derived from it — the
method lists, the norms, the paper's default parameters per dataset, the bound attack functions,
and the audit's groups (:mod:`pcl_tf.audit`).

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
import importlib
from typing import Callable, Dict, Optional

# The table names each attack's function by "module:function" and imports it only when an attack
# is made: reading the table (pcl-attack's flags and --help) must not import TensorFlow.
_CH, _ADAPTIVE, _APGD, _SQUARE = ("pcl_tf.attacks.cleverhans_compat", "pcl_tf.attacks.adaptive",
                                  "pcl_tf.attacks.apgd", "pcl_tf.attacks.square")

_SMALL_IMAGE_DATASETS = ("mnist", "fashion_mnist")

# What an attack is, for the audit's comparisons.
ONE_STEP, ITERATIVE, GRADIENT_FREE, MINIMUM_DISTORTION = "one-step", "iterative", "gradient-free", "minimum-distortion"
# Which attack suite it belongs to (the --suite of pcl-attack).
PAPER, ADAPTIVE, STRONG = "paper", "adaptive", "strong"


def paper_eps(dataset: str) -> float:
    return 0.3 if dataset in _SMALL_IMAGE_DATASETS else 0.03


def paper_c(dataset: str) -> float:
    return 10.0 if dataset in _SMALL_IMAGE_DATASETS else 0.1


# ------------------------------------------------------------------ default parameters per attack
# Each: (dataset, eps, steps, step_size, c) -> the attack's keyword arguments; ``eps`` is already
# the paper's ε for the dataset unless given.


def _eps_only(dataset, eps, steps, step_size, c):
    return {"eps": eps}


def _paper_iterative(dataset, eps, steps, step_size, c):
    return {"eps": eps, "steps": 10 if steps is None else int(steps),
            "step_size": eps / 10 if step_size is None else float(step_size)}


def _cw(dataset, eps, steps, step_size, c):
    return {
        "c": paper_c(dataset) if c is None else float(c),
        "steps": 1000 if steps is None else int(steps),
        "learning_rate": 0.01,
        # One run of 1000 iterations from the paper's c, not CleverHans' default of five
        # binary-search rounds (5000 iterations: ~0.1 image/s for CNN-6 on 2 CPU cores).
        "binary_search_steps": 1,
    }


def _apgd_ce(dataset, eps, steps, step_size, c):
    return {"eps": eps, "steps": 100 if steps is None else int(steps), "restarts": 1}


def _apgd_t(dataset, eps, steps, step_size, c):
    return {"eps": eps, "steps": 100 if steps is None else int(steps), "n_target_classes": 9, "restarts": 1}


def _square(dataset, eps, steps, step_size, c):
    return {"eps": eps, "queries": 5000 if steps is None else int(steps), "p_init": 0.8}


def _pgd_restarts(dataset, eps, steps, step_size, c):
    steps = 10 if steps is None else int(steps)
    return {"eps": eps, "steps": steps, "step_size": 2.5 * eps / steps if step_size is None else float(step_size),
            "restarts": 5}


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One row of the attack table."""

    name: str  # the method name of pcl-attack and the reports
    label: str  # how tables print it
    fn: str  # "module:function", the function (model, x, y, **params) -> x_adv
    params: Callable  # (dataset, eps, steps, step_size, c) -> params: the defaults per dataset
    norm: str  # linf | l2
    kind: str  # ONE_STEP | ITERATIVE | GRADIENT_FREE | MINIMUM_DISTORTION
    suite: str  # PAPER | ADAPTIVE | STRONG
    eps_bounded: bool = True  # stays in the ε-ball: part of the ε threat model and the worst case
    model: str = "logits"  # what it attacks: "logits" (the logits-only twin) or "pcl" (the PCLModel)
    seeded: bool = False  # takes a ``seed`` (random start, restarts, random search)
    cascade: bool = False  # runs only on the images every attack before it left robust (AutoAttack)
    # Rank among the attacks the audit holds the paper's PGD against (0: not one); on equal
    # accuracy the audit names the lowest rank.
    strong_rank: int = 0
    autoattack: bool = False  # in AutoAttack's standard suite (pcl-attack --suite=standard)


# Table order: the paper's Table 2, then the attacks that know the defence, then AutoAttack's
# standard order (APGD-CE, APGD-T, Square) and PGD with random restarts — the cascade order.
SPECS = (
    AttackSpec("fgsm", "FGSM", f"{_CH}:fgsm", _eps_only, "linf", ONE_STEP, PAPER),
    AttackSpec("bim", "BIM", f"{_CH}:bim", _paper_iterative, "linf", ITERATIVE, PAPER),
    AttackSpec("cw", "C&W", f"{_CH}:cw_l2", _cw, "l2", MINIMUM_DISTORTION, PAPER, eps_bounded=False),
    AttackSpec("mim", "MIM", f"{_CH}:mim", _paper_iterative, "linf", ITERATIVE, PAPER),
    AttackSpec("pgd", "PGD", f"{_CH}:pgd", _paper_iterative, "linf", ITERATIVE, PAPER, seeded=True),
    AttackSpec("adaptive", "adaptive", f"{_ADAPTIVE}:adaptive_pc", _paper_iterative, "linf", ITERATIVE, ADAPTIVE,
               model="pcl", seeded=True, strong_rank=3),
    AttackSpec("feature", "feature", f"{_ADAPTIVE}:feature_space", _paper_iterative, "linf", ITERATIVE, ADAPTIVE,
               model="pcl", seeded=True, strong_rank=4),
    AttackSpec("apgd-ce", "APGD-CE", f"{_APGD}:apgd_ce", _apgd_ce, "linf", ITERATIVE, STRONG, seeded=True, cascade=True,
               strong_rank=2, autoattack=True),
    AttackSpec("apgd-t", "APGD-T", f"{_APGD}:apgd_t", _apgd_t, "linf", ITERATIVE, STRONG, seeded=True, cascade=True,
               strong_rank=1, autoattack=True),
    AttackSpec("square", "Square", f"{_SQUARE}:square", _square, "linf", GRADIENT_FREE, STRONG, seeded=True, cascade=True,
               autoattack=True),
    AttackSpec("pgd-restarts", "PGD-restarts", f"{_APGD}:pgd_restarts", _pgd_restarts, "linf", ITERATIVE, STRONG,
               seeded=True, cascade=True, strong_rank=5),
)
BY_NAME: Dict[str, AttackSpec] = {spec.name: spec for spec in SPECS}

METHODS = tuple(spec.name for spec in SPECS)
PAPER_METHODS = tuple(spec.name for spec in SPECS if spec.suite == PAPER)
ADAPTIVE_METHODS = tuple(spec.name for spec in SPECS if spec.suite == ADAPTIVE)
STRONG_METHODS = tuple(spec.name for spec in SPECS if spec.suite == STRONG)
AUTOATTACK_METHODS = tuple(spec.name for spec in SPECS if spec.autoattack)
NORMS = {spec.name: spec.norm for spec in SPECS}
LABELS = {spec.name: spec.label for spec in SPECS}


def names(predicate: Callable[[AttackSpec], bool]):
    """The names of the attacks ``predicate`` holds for, in table order."""
    return tuple(spec.name for spec in SPECS if predicate(spec))


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


def _spec(method: str) -> AttackSpec:
    if method not in BY_NAME:
        raise ValueError(f"unknown attack {method!r}; choose one of {', '.join(METHODS)} or all")
    return BY_NAME[method]


def default_params(
    method: str,
    dataset: str,
    eps: Optional[float] = None,
    steps: Optional[int] = None,
    step_size: Optional[float] = None,
    c: Optional[float] = None,
) -> Dict[str, float]:
    """The paper's parameters for ``method`` on ``dataset``, with any given value overriding."""
    spec = _spec(method)
    return spec.params(dataset, paper_eps(dataset) if eps is None else float(eps), steps, step_size, c)


def make_attack(method: str, params: Dict[str, float], seed: Optional[int] = None) -> Attack:
    """Binds ``params`` (and the random-start ``seed``) to the attack function."""
    spec = _spec(method)
    kwargs = dict(params)
    if spec.seeded and seed is not None:
        kwargs["seed"] = seed
    module, function = spec.fn.split(":")
    fn = getattr(importlib.import_module(module), function)
    return Attack(method, functools.partial(fn, **kwargs), spec.model == "pcl",
                  cascade=spec.cascade, within_eps=spec.eps_bounded)
