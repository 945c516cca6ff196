"""Adversarial training's augmentation (paper Sec. 5.1, Algorithm 1): which batch a step trains on.

:class:`AdversarialAugmentation` draws ε per batch (uniformly from ``[eps_min, eps_max]``, or
fixed when they are equal, Madry-style), makes the adversarial copies against the *current*
model in inference mode (BatchNorm statistics untouched) with the in-graph FGSM/PGD of
:mod:`pcl_tf.attacks.core` (ε may be a tensor drawn per batch inside the compiled step, which
CleverHans' Python-side checks do not allow), and returns the batch the update is computed on:
clean and adversarial halves (batch doubled, labels duplicated), or the adversarial images alone.

``fgsm`` and ``pgd`` here are the core's (one implementation for training and evaluation).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from pcl_tf.attacks.core import LossFn, fgsm, pgd  # noqa: F401  (fgsm, pgd: re-exported for callers)

METHODS = ("none", "fgsm", "pgd")


@dataclasses.dataclass(frozen=True)
class AdversarialAugmentation:
    """How each training batch is augmented: ``method`` fgsm or pgd, ε ~ U[eps_min, eps_max].

    ``step_size_ratio`` sets PGD's step as a fraction of the batch's ε (0.25 with 10 steps is
    Madry et al.'s 2.5·ε/steps); ``step_size`` > 0 fixes it in pixel units instead, whatever ε
    (the released code's PGD training: 2/255); ``include_clean=False`` trains on the adversarial images alone.

    ``ramp_steps`` > 0 scales the drawn ε by ``min(1, (step + 1) / ramp_steps)`` at training step
    ``step`` (counted from 0): ε grows linearly to its full value. Why: adversarial-only training
    at a large fixed ε from random weights can sit at chance (Madry at ε = 0.3 on Fashion-MNIST,
    Adam 1e-3, stayed at CE 2.3028 for a whole epoch here); a short ramp lets the clean features
    form first. The step is the optimizer's iteration count, so a resumed run picks the ramp up
    where it stopped.
    """

    method: str
    eps_min: float
    eps_max: float
    steps: int = 10
    step_size_ratio: float = 0.25
    random_start: bool = True
    include_clean: bool = True
    ramp_steps: int = 0
    start_radius_ratio: float = 1.0  # PGD's uniform start: U(-r ε, r ε) (N-FGSM: 2)
    project: bool = True  # keep PGD's iterates in the ε-ball (N-FGSM: False)
    step_size: float = 0.0  # > 0: PGD's step in pixel units, not step_size_ratio * ε

    def __post_init__(self):
        if self.method not in ("fgsm", "pgd"):
            raise ValueError(f"unknown adversarial training method {self.method!r}; choose fgsm or pgd")
        if not 0.0 <= self.eps_min <= self.eps_max <= 1.0:
            raise ValueError(
                f"adversarial ε range [{self.eps_min}, {self.eps_max}] must satisfy 0 <= eps_min <= eps_max <= 1"
            )
        if self.method == "pgd" and (self.steps <= 0 or self.step_size_ratio <= 0):
            raise ValueError("PGD adversarial training needs steps > 0 and step_size_ratio > 0")
        if self.step_size < 0:
            raise ValueError(f"PGD's fixed step must be >= 0 (0 = step_size_ratio * ε), got {self.step_size}")
        if self.start_radius_ratio < 0:
            raise ValueError(f"the random start's radius must be >= 0 (in units of ε), got {self.start_radius_ratio}")
        if self.ramp_steps < 0:
            raise ValueError(f"the ε ramp's length must be >= 0 steps, got {self.ramp_steps}")

    def sample_eps(self) -> tf.Tensor:
        if self.eps_min == self.eps_max:
            return tf.constant(self.eps_min, tf.float32)
        return tf.random.uniform([], self.eps_min, self.eps_max)

    def ramp(self, step) -> tf.Tensor:
        """The factor on ε at training step ``step`` (from 0): 1 without a ramp."""
        if self.ramp_steps == 0:
            return tf.constant(1.0, tf.float32)
        return tf.minimum(1.0, (tf.cast(step, tf.float32) + 1.0) / float(self.ramp_steps))

    def perturb(self, loss_fn: LossFn, x, y, eps) -> tf.Tensor:
        if self.method == "fgsm":
            return tf.stop_gradient(fgsm(loss_fn, x, y, eps))
        step_size = self.step_size if self.step_size else self.step_size_ratio * eps
        return pgd(loss_fn, x, y, eps, self.steps, step_size, self.random_start,
                   start_radius=self.start_radius_ratio * eps, project=self.project)

    def __call__(self, loss_fn: LossFn, x, y, step=None):
        """Returns ``(x_train, y_train)``: the batch the weight update is computed on.

        ``step`` is the training step (needed with a ramp)."""
        if self.ramp_steps and step is None:
            raise ValueError("an adversarial augmentation with an ε ramp needs the training step")
        x = tf.convert_to_tensor(x)
        eps = self.sample_eps() if step is None else self.sample_eps() * self.ramp(step)
        x_adv = self.perturb(loss_fn, x, y, eps)
        if not self.include_clean:
            return x_adv, y
        return tf.concat([x, x_adv], axis=0), tf.concat([y, y], axis=0)
