"""CleverHans TF2 attacks as pcl_tf uses them, made to work on Keras 3 / NumPy 2.

Every attack is a function ``attack(model_fn, x, y, **params) -> x_adv`` where

* ``model_fn`` is a callable returning **logits** (not probabilities), for instance a Keras 3
  functional "logits-only twin" of the trained model, called as ``model_fn(x)``;
* ``x`` is a float32 batch of images, shape ``(N, H, W, C)``, values in [0, 1] (pixel space: any
  normalisation lives inside the model, so ε is in pixel units);
* ``y`` holds the **true** integer labels, shape ``(N,)``. All attacks are untargeted and move
  away from ``y`` (passing ``y`` avoids CleverHans' fallback to the model's own predictions);
* ``x_adv`` is a float32 ``tf.Tensor`` shaped like ``x``, in [0, 1].

Arguments are validated up front (``ValueError`` with a one-line message), which reads the values
of ``x``: call these functions eagerly, not inside a ``tf.function``.

The L∞ attacks (``fgsm``, ``bim``, ``mim``, ``pgd``) keep ``max |x_adv - x| <= eps``;
``cw_l2`` is an L2 *minimum-distortion* attack and has no ε-ball.

CleverHans 4.0.0 was written for TF 2 with Keras 2 and NumPy 1. What breaks and how it is fixed
here (each fix is repeated at the line that applies it):

1. BIM / PGD: ``projected_gradient_descent`` ends with ``assert np.all(asserts)`` over a list mixing
   image-shaped boolean tensors and Python bools; NumPy 2 refuses to build that ragged array
   ("inhomogeneous shape"). Fix: ``sanity_checks=False``; the same checks (x in [0, 1], 0 <= ε <= 1)
   are done up front by :mod:`pcl_tf.attacks.validation`.
2. BIM / PGD: ``assert eps_iter <= eps`` at the top of ``projected_gradient_descent``. The step is
   passed as ``min(step_size, eps)`` (under L∞ a larger step is cut back to the ball anyway), which
   also lets ``eps=0`` return the input unchanged.
3. C&W-L2: ``for var in self.optimizer.variables():`` in ``CarliniWagnerL2._attack`` – Keras 3 made
   ``Optimizer.variables`` a property, so calling it raises ``TypeError: 'list' object is not
   callable``. A shim that merely makes ``variables()`` callable runs but *silently returns the
   inputs unchanged*: the attack zeroes every listed variable at each binary-search step, and in
   Keras 3 that list includes the learning rate, so Adam never moves. Fix: ``_CWAdam`` below lists
   every optimizer variable except the learning rate (the ``int64`` iteration counter is kept in the
   list, so Adam's bias correction restarts, and CleverHans' ``tf.zeros(..., dtype=var.dtype)``
   keeps its dtype).
4. C&W-L2: ``self.targeted = y is not None`` in ``CarliniWagnerL2.__init__`` ignores the
   ``targeted`` argument, so passing the true labels turns the attack into a *targeted* attack
   towards the true class, which also returns (almost exactly) the inputs. Fix: set
   ``attack.targeted = False`` after construction.
5. C&W-L2: ``CarliniWagnerL2.attack`` splits ``x`` into ``batch_size`` chunks but not ``self.y``
   ("x and y do not have the same shape!"), and it would reuse one optimizer for each chunk's new
   ``modifier`` variable, which a built Keras 3 optimizer rejects ("Unknown variable"). So this
   module splits the batch itself and gives each chunk a fresh optimizer (the attack object, whose
   compiled gradient is traced once, is reused for every chunk and call with the same settings).
6. C&W-L2: ``const = tf.ones(shape) * self.initial_const`` in ``_attack`` gives the trade-off
   constant the *image's* shape (B, H, W, C), and ``loss_fn`` multiplies it by the per-example
   misclassification loss of shape (B,): the product broadcasts to (B, H, W, B), so the
   misclassification term is weighted by c·B·H·W instead of c. The attack then depends on the
   batch size and hardly minimises the distortion, and each step costs ~17 % more (a B·H·W·B
   tensor forward and backward). Fix: ``_CarliniWagnerL2.gradient`` hands CleverHans' gradient
   the per-example constant (the values CleverHans' binary search keeps consistent sit at
   ``const[k, 0, 0, 0]``, or at ``const[k, 0, 0, k]`` once its update has broadcast the array).
``fast_gradient_method`` and ``momentum_iterative_method`` work unchanged (MIM's own
``sanity_checks`` pass on NumPy 2; it gets ``sanity_checks=False`` as the checks are done here).
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf
from cleverhans.tf2.attacks.carlini_wagner_l2 import CarliniWagnerL2
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method
from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

from pcl_tf import compiled
from pcl_tf.attacks import validation
from pcl_tf.attacks.validation import CLIP_MAX, CLIP_MIN

__all__ = ["fgsm", "bim", "mim", "pgd", "cw_l2"]


# --------------------------------------------------------------------------- L∞ gradient attacks


def fgsm(model_fn, x, y, eps):
    """Fast Gradient Sign Method, L∞ (Goodfellow, Shlens & Szegedy, ICLR 2015,
    "Explaining and Harnessing Adversarial Examples"): ``x + eps * sign(∇x CE)``, clipped to [0, 1].

    CleverHans ``fast_gradient_method`` works unchanged on Keras 3.
    """
    eps = validation.check_eps(eps)
    x, y = validation.check_x_y(x, y)
    return fast_gradient_method(
        model_fn, x, eps, np.inf, clip_min=CLIP_MIN, clip_max=CLIP_MAX, y=y, targeted=False
    )


def _pgd(model_fn, x, y, eps, steps, step_size, rand_init):
    return projected_gradient_descent(
        model_fn,
        x,
        eps,
        # CleverHans: `assert eps_iter <= eps` (first line of projected_gradient_descent). Under L∞
        # a larger step is projected back to the ball anyway; clamping also makes eps=0 return x.
        min(step_size, eps),
        steps,
        np.inf,
        clip_min=CLIP_MIN,
        clip_max=CLIP_MAX,
        y=y,
        targeted=False,
        rand_init=rand_init,
        # CleverHans: `if sanity_checks: assert np.all(asserts)` (end of projected_gradient_descent)
        # mixes tensors and bools -> NumPy 2 "inhomogeneous shape" ValueError. Checked up front.
        sanity_checks=False,
    )


def bim(model_fn, x, y, eps, steps, step_size):
    """Basic Iterative Method, L∞ (Kurakin, Goodfellow & Bengio, ICLR 2017 workshop, "Adversarial
    examples in the physical world"): ``steps`` FGSM steps of ``step_size`` from ``x`` (no random
    start), each projected onto the ε-ball and [0, 1].

    = CleverHans ``basic_iterative_method`` (PGD without random start) with ``sanity_checks=False``.
    """
    eps = validation.check_eps(eps)
    steps = validation.check_positive_int("steps", steps)
    step_size = validation.check_step_size(step_size, eps)
    x, y = validation.check_x_y(x, y)
    return _pgd(model_fn, x, y, eps, steps, step_size, rand_init=False)


def pgd(model_fn, x, y, eps, steps, step_size, rand_init=True, seed=None):
    """Projected Gradient Descent, L∞ (Madry et al., ICLR 2018, "Towards Deep Learning Models
    Resistant to Adversarial Attacks"): a uniform random start in the ε-ball (``rand_init=True``;
    CleverHans' own default is *no* random start), then BIM steps.

    ``seed`` (optional int) makes the random start reproducible by calling
    ``tf.random.set_seed(seed)`` first – CleverHans draws it with ``tf.random.uniform`` without a
    seed argument, so the global seed is the only handle. It resets TF's global random state.
    """
    eps = validation.check_eps(eps)
    steps = validation.check_positive_int("steps", steps)
    step_size = validation.check_step_size(step_size, eps)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        tf.random.set_seed(int(seed))
    x, y = validation.check_x_y(x, y)
    return _pgd(model_fn, x, y, eps, steps, step_size, rand_init=bool(rand_init))


def mim(model_fn, x, y, eps, steps, step_size, decay=1.0):
    """Momentum Iterative Method, L∞ (Dong et al., CVPR 2018, "Boosting Adversarial Attacks with
    Momentum"): BIM on an accumulated, L1-normalised gradient with momentum ``decay`` (μ).

    CleverHans ``momentum_iterative_method`` works unchanged; ``sanity_checks=False`` because the
    same checks are done here.
    """
    eps = validation.check_eps(eps)
    steps = validation.check_positive_int("steps", steps)
    step_size = validation.check_step_size(step_size, eps)
    if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or decay < 0:
        raise ValueError(f"decay must be a non-negative number, got {decay!r}")
    x, y = validation.check_x_y(x, y)
    return momentum_iterative_method(
        model_fn,
        x,
        eps=eps,
        eps_iter=step_size,
        nb_iter=steps,
        norm=np.inf,
        clip_min=CLIP_MIN,
        clip_max=CLIP_MAX,
        y=y,
        targeted=False,
        decay_factor=float(decay),
        sanity_checks=False,
    )


# --------------------------------------------------------------------------- Carlini & Wagner L2


class _CWAdam:
    """The two things ``CarliniWagnerL2`` asks of ``self.optimizer``, on a Keras 3 Adam.

    CleverHans: ``for var in self.optimizer.variables(): var.assign(tf.zeros(...))`` at each binary
    search step. Keras 3's ``variables`` is a property (calling it raises TypeError), and it lists
    the learning-rate variable, which must survive the reset or Adam takes zero-size steps and the
    attack returns its inputs. The iteration counter stays in the list (reset to 0 in its own int64
    dtype) so Adam's bias correction restarts with the moments.
    """

    def __init__(self, learning_rate):
        self._adam = keras.optimizers.Adam(learning_rate=float(learning_rate))

    def variables(self):
        lr = self._adam.learning_rate  # a float rate is held in this Keras 3 Variable
        return [v for v in self._adam.variables if v is not lr]

    def apply_gradients(self, grads_and_vars):
        return self._adam.apply_gradients(grads_and_vars)


def cw_l2(
    model_fn,
    x,
    y,
    c=10.0,
    steps=1000,
    learning_rate=0.01,
    binary_search_steps=5,
    confidence=0.0,
    batch_size=None,
    abort_early=True,
):
    """Carlini & Wagner L2 attack (Carlini & Wagner, IEEE S&P 2017, "Towards Evaluating the
    Robustness of Neural Networks"), untargeted, in tanh space, optimised with Adam.

    An L2 minimum-distortion attack: there is no ε-ball; each output is the smallest-L2 successful
    example found, or the input itself where no step succeeded. ``c`` is the initial trade-off
    constant (CleverHans ``initial_const``; paper-reproduction value 10 for F/MNIST, 0.1 for
    CIFAR/SVHN), refined by ``binary_search_steps`` rounds of ``steps`` Adam iterations
    (``max_iterations``) each; ``abort_early`` stops a round whose loss stalls. ``confidence`` is
    the κ margin. ``batch_size`` (default: all of ``x``) is how many images are optimised together.

    Fixes to CleverHans ``CarliniWagnerL2`` (see the module docstring): ``_CWAdam`` for
    ``self.optimizer.variables()``; ``targeted = False`` after construction; one chunk per call
    with its own labels and optimizer; the constant per example (``_CarliniWagnerL2``).
    """
    c = validation.check_positive("c", c)
    steps = validation.check_positive_int("steps", steps)
    learning_rate = validation.check_positive("learning_rate", learning_rate)
    binary_search_steps = validation.check_positive_int("binary_search_steps", binary_search_steps)
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or confidence < 0:
        raise ValueError(f"confidence must be a non-negative number, got {confidence!r}")
    if batch_size is not None:
        batch_size = validation.check_positive_int("batch_size", batch_size)
    x, y = validation.check_x_y(x, y)
    x_np, y_np = x.numpy(), y.numpy()
    n = x_np.shape[0]
    batch_size = n if batch_size is None else batch_size

    settings = dict(batch_size=batch_size, clip_min=CLIP_MIN, clip_max=CLIP_MAX,
                    binary_search_steps=binary_search_steps, max_iterations=steps, abort_early=bool(abort_early),
                    confidence=float(confidence), initial_const=c, learning_rate=learning_rate)
    out = np.empty_like(x_np)
    for i in range(0, n, batch_size):
        attack = _cw_instance(model_fn, settings)
        # CleverHans' own chunking in `attack` does not slice `self.y`: one chunk per call.
        attack.y = y_np[i : i + batch_size]
        # CleverHans: `for var in self.optimizer.variables():` in CarliniWagnerL2._attack: _CWAdam.
        # A fresh optimizer per chunk: a built Keras 3 optimizer rejects the next chunk's `modifier`
        # ("Unknown variable").
        attack.optimizer = _CWAdam(learning_rate)
        out[i : i + batch_size] = attack.attack(x_np[i : i + batch_size])
    return tf.constant(out)


class _CarliniWagnerL2(CarliniWagnerL2):
    """CleverHans' C&W-L2 with its trade-off constant per example (fix 6 of the module docstring)."""

    @tf.function
    def gradient(self, x, y, modifier, const):
        # CleverHans: `const = tf.ones(shape) * self.initial_const` in `_attack` (image-shaped).
        corner = tf.reshape(const, [const.shape[0], -1, const.shape[-1]])[:, 0, :]  # (B, 1) or (B, B)
        per_example = corner[:, 0] if const.shape[-1] == 1 else tf.linalg.diag_part(corner)
        return CarliniWagnerL2.gradient.python_function(self, x, y, modifier, per_example)


def _cw_instance(model_fn, settings):
    """One attack object per (model, settings), kept while the model lives: CleverHans compiles
    C&W's gradient as a tf.function traced per attack object, so reusing the object for every
    batch of an evaluation traces it once instead of once per batch (a few seconds each on CPU)."""

    def build():
        attack = _CarliniWagnerL2(model_fn, y=np.zeros(1, np.int64), **settings)
        # CleverHans: `self.targeted = y is not None` in CarliniWagnerL2.__init__ ignores the
        # `targeted` argument; with the true labels it would attack *towards* them (returns x).
        attack.targeted = False
        return attack

    return compiled.once_per(model_fn, ("cw-l2",) + tuple(sorted(settings.items())), build)
