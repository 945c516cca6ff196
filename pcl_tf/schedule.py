"""The training schedule a config asks for: epochs, the CE warm-up, and the learning rate per step.

The paper (Algorithm 1, Sec. 5) trains T' = 50 epochs of cross-entropy, then the joint loss up to
epoch 350, with SGD at lr 0.1 multiplied by 0.1 at epochs 200 and 250 (500 epochs, decays at 200
and 250 for CIFAR/SVHN, T' = 200). ``train.schedule_scale`` shrinks that whole schedule in
proportion, so that a CPU run is the paper's recipe at 1/8 (or 1/32, ...) of its length rather
than a different recipe:

    epochs         round(scale * train.epochs)          (at least 1)
    warm-up        round(scale * train.warmup_epochs)
    LR decays      scale * train.lr_decay_epochs, as exact step counts (they may fall mid-epoch)

``round`` rounds halves up. At scale 1/8 on Fashion-MNIST: 44 epochs, 6 of CE, decays at epochs
25 and 31.25.

``train.lr_warmup_epochs`` (default 0) adds a linear learning-rate ramp from lr/steps to lr over
that many epochs at the very start (Goyal et al. 2017). It exists because SGD at lr 0.1 from
random weights can fail on a network without normalisation layers; it is 0 in the paper's recipe
and named wherever a run uses it.

A second, restarted stage (the released code's recipe, docs/official_recipe.md): with
``train.pcl_lr`` > 0 the learning rate jumps to that value when the joint loss switches on (after
the CE warm-up) and decays by ``lr_decay_factor`` at ``train.pcl_lr_decay_epochs``, counted from
the start of the joint stage; the centroids' learning rate decays at the same epochs. The CE
stage's own decays (``train.lr_decay_epochs``) then lie inside the warm-up.
``train.official_pcl_lr_decay_bug=True`` reproduces the released code on purpose: its decay
function writes a key that PyTorch's optimizers never read, so neither the network's nor the
centres' learning rate ever decays in the joint stage; the joint-stage decays are then ignored.
``train.pcl_lr`` = 0 (the default) keeps one schedule over the whole run, as the paper.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence, Tuple

import keras
import tensorflow as tf


# piecewise: the paper's decays; one_cycle: up and down over the planned steps; one_cycle_time: up
# and down over train.time_budget_minutes of training time, whatever the steps per second.
LR_SCHEDULES = ("piecewise", "one_cycle", "one_cycle_time")


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The resolved schedule of a run, in epochs (decays may be fractional)."""

    epochs: int
    warmup_epochs: int
    lr_decay_epochs: Tuple[float, ...]
    lr_warmup_epochs: float = 0.0
    scale: float = 1.0
    kind: str = "piecewise"  # one of LR_SCHEDULES
    pcl_lr: float = 0.0  # > 0: the lr restarts at this value when the joint loss switches on
    pcl_lr_decay_epochs: Tuple[float, ...] = ()  # counted from the start of the joint stage
    official_pcl_lr_decay_bug: bool = False  # True: pcl_lr_decay_epochs are ignored (released code)

    @classmethod
    def from_config(cls, train) -> "Schedule":
        """``train`` is a config's ``train`` section (``schedule_scale`` defaults to 1)."""
        scale = float(train.get("schedule_scale", 1.0))
        return cls(
            epochs=max(1, _round_half_up(scale * train.epochs)),
            warmup_epochs=_round_half_up(scale * train.warmup_epochs),
            lr_decay_epochs=tuple(scale * float(e) for e in train.lr_decay_epochs),
            lr_warmup_epochs=float(train.get("lr_warmup_epochs", 0.0)),
            scale=scale,
            kind=str(train.get("lr_schedule", "piecewise")),
            pcl_lr=float(train.get("pcl_lr", 0.0)),
            pcl_lr_decay_epochs=tuple(scale * float(e) for e in train.get("pcl_lr_decay_epochs", ())),
            official_pcl_lr_decay_bug=bool(train.get("official_pcl_lr_decay_bug", False)),
        )

    def decay_steps(self, steps_per_epoch: int) -> Tuple[int, ...]:
        """The optimizer step at which each decay takes effect (the first step with the lower lr)."""
        return tuple(sorted(_round_half_up(e * steps_per_epoch) for e in self.lr_decay_epochs))

    def joint_decay_steps(self, steps_per_epoch: int) -> Tuple[int, ...]:
        """The steps at which the joint stage's decays take effect (none with the released code's
        bug, or without a restarted joint stage)."""
        if not self.pcl_lr or self.official_pcl_lr_decay_bug:
            return ()
        start = self.warmup_epochs * steps_per_epoch
        return tuple(sorted(start + _round_half_up(e * steps_per_epoch) for e in self.pcl_lr_decay_epochs))

    def learning_rate(self, base_lr: float, steps_per_epoch: int, decay_factor: float = 0.1,
                      train_seconds=None, budget_seconds: float = 0.0):
        """A float, or a Keras schedule of ``optimizer.iterations`` (so it survives a resume) — or,
        for ``one_cycle_time``, of ``train_seconds`` (the run's training-time variable) against
        ``budget_seconds``."""
        if self.pcl_lr:
            if self.kind != "piecewise":
                raise ValueError("a restarted joint stage (pcl_lr > 0) needs the piecewise lr schedule")
            ce_decays = self.decay_steps(steps_per_epoch)
            joint_decays = self.joint_decay_steps(steps_per_epoch)
            values = ([float(base_lr) * decay_factor**i for i in range(len(ce_decays) + 1)]
                      + [self.pcl_lr * decay_factor**i for i in range(len(joint_decays) + 1)])
            return WarmupPiecewiseConstant(list(ce_decays) + [self.warmup_epochs * steps_per_epoch] + list(joint_decays),
                                           values, _round_half_up(self.lr_warmup_epochs * steps_per_epoch))
        if self.kind == "one_cycle":
            return OneCycle(base_lr, total_steps=self.epochs * steps_per_epoch)
        if self.kind == "one_cycle_time":
            if budget_seconds <= 0:
                raise ValueError("lr schedule one_cycle_time runs over a time budget: set train.time_budget_minutes > 0")
            if train_seconds is None:
                raise ValueError("lr schedule one_cycle_time reads the run's training time: pass train_seconds "
                                 "(pcl_tf.checkpointing.RunState.seconds)")
            return BudgetOneCycle(base_lr, train_seconds, budget_seconds)
        if self.kind != "piecewise":
            raise ValueError(f"unknown lr schedule {self.kind!r}; choose {', '.join(LR_SCHEDULES)}")
        return learning_rate_schedule(base_lr, self.decay_steps(steps_per_epoch), decay_factor,
                                      warmup_steps=_round_half_up(self.lr_warmup_epochs * steps_per_epoch))

    def centroid_learning_rate(self, centroid_lr: float, steps_per_epoch: int, decay_factor: float = 0.1):
        """The centroids' learning rate: constant, or decayed with the joint stage's decays."""
        return learning_rate_schedule(centroid_lr, self.joint_decay_steps(steps_per_epoch), decay_factor)

    def describe(self) -> str:
        text = f"{self.epochs} epochs ({self.warmup_epochs} CE warm-up)"
        if self.kind == "one_cycle":
            text += ", one-cycle lr (up to the peak at 2/5 of the run, down to 0 at its end)"
        elif self.kind == "one_cycle_time":
            text += ", one-cycle lr over the time budget (up to the peak at 2/5 of it, down to 0 when it runs out)"
        elif self.lr_decay_epochs:
            text += ", lr decays at epochs " + ", ".join(f"{e:g}" for e in self.lr_decay_epochs)
        if self.pcl_lr:
            text += f", joint stage restarts at lr {self.pcl_lr:g}"
            if self.pcl_lr_decay_epochs:
                decays = ", ".join(f"{e:g}" for e in self.pcl_lr_decay_epochs)
                text += (f" (its decays at joint epochs {decays} ignored: official_pcl_lr_decay_bug)"
                         if self.official_pcl_lr_decay_bug else f" and decays at joint epochs {decays}")
        if self.lr_warmup_epochs:
            text += f", linear lr warm-up over {self.lr_warmup_epochs:g} epochs"
        if self.scale != 1.0:
            text += f" (schedule_scale {self.scale:g})"
        return text


@keras.saving.register_keras_serializable(package="pcl_tf")
class WarmupPiecewiseConstant(keras.optimizers.schedules.LearningRateSchedule):
    """``values[i]`` from step ``boundaries[i-1]`` on (piecewise constant, first value before the
    first boundary), after a linear ramp ``(step + 1) / warmup_steps * values[0]`` over the first
    ``warmup_steps`` steps. Boundaries are the first steps of each new value."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float], warmup_steps: int = 0):
        if len(values) != len(boundaries) + 1:
            raise ValueError("a piecewise-constant schedule needs one more value than boundaries")
        self.boundaries = [int(b) for b in boundaries]
        self.values = [float(v) for v in values]
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.values[0], tf.float32)
        for boundary, value in zip(self.boundaries, self.values[1:]):
            lr = tf.where(step >= float(boundary), tf.constant(value, tf.float32), lr)
        if self.warmup_steps:
            lr = lr * tf.minimum(1.0, (step + 1.0) / float(self.warmup_steps))
        return lr

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="pcl_tf")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The cyclic schedule of "fast" adversarial training (Wong, Rice & Kolter 2020; Smith's
    one-cycle): linear from 0 to ``peak_lr`` over the first ``peak_fraction`` of ``total_steps``,
    then linear down to 0 at the last step."""

    def __init__(self, peak_lr: float, total_steps: int, peak_fraction: float = 0.4):
        if total_steps <= 0 or not 0.0 < peak_fraction < 1.0:
            raise ValueError("a one-cycle schedule needs total_steps > 0 and 0 < peak_fraction < 1")
        self.peak_lr, self.total_steps, self.peak_fraction = float(peak_lr), int(total_steps), float(peak_fraction)

    def __call__(self, step):
        t = (tf.cast(step, tf.float32) + 1.0) / float(self.total_steps)  # after this step, in (0, 1]
        return one_cycle(t, self.peak_lr, self.peak_fraction)

    def get_config(self):
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps, "peak_fraction": self.peak_fraction}


def one_cycle(t, peak_lr: float, peak_fraction: float = 0.4):
    """The one-cycle learning rate at progress ``t`` (0 at the start of the run, 1 at its end)."""
    up = t / peak_fraction
    down = (1.0 - t) / (1.0 - peak_fraction)
    return peak_lr * tf.clip_by_value(tf.minimum(up, down), 0.0, 1.0)


class BudgetOneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle over a run's time budget (``train.lr_schedule="one_cycle_time"``): its progress is
    the share of ``budget_seconds`` trained so far, read from ``train_seconds`` (the run's
    checkpointed training time, over every session, which pcl_tf.checkpointing.StepCheckpoint
    brings up to date before each step) instead of a planned number of steps. A run whose speed is
    only known roughly in advance (a wall-clock benchmark) still peaks at 2/5 of its budget and ends
    at lr 0 when the budget runs out, whatever its steps per second. Not serialisable: it reads a
    live variable (the run's checkpoints hold the variable, not the schedule)."""

    def __init__(self, peak_lr: float, train_seconds, budget_seconds: float, peak_fraction: float = 0.4):
        if budget_seconds <= 0 or not 0.0 < peak_fraction < 1.0:
            raise ValueError("a time-budget one-cycle schedule needs budget_seconds > 0 and 0 < peak_fraction < 1")
        self.peak_lr, self.train_seconds = float(peak_lr), train_seconds
        self.budget_seconds, self.peak_fraction = float(budget_seconds), float(peak_fraction)

    def __call__(self, step):
        t = tf.cast(self.train_seconds, tf.float32) / self.budget_seconds
        return one_cycle(tf.clip_by_value(t, 0.0, 1.0), self.peak_lr, self.peak_fraction)

    def get_config(self):
        raise NotImplementedError("BudgetOneCycle reads a run's live training-time variable; rebuild it with "
                                  "Schedule.learning_rate")


def learning_rate_schedule(base_lr: float, decay_steps: Sequence[int] = (), decay_factor: float = 0.1,
                           warmup_steps: int = 0):
    """Piecewise-constant learning rate: ``base_lr`` times ``decay_factor`` from each of
    ``decay_steps`` on, after an optional linear warm-up of ``warmup_steps`` steps.

    Expressed in optimizer steps (``optimizer.iterations``), so the decay takes effect, survives a
    resume, and can be checked by reading ``optimizer.learning_rate``.
    """
    if not decay_steps and not warmup_steps:
        return float(base_lr)
    values = [float(base_lr) * decay_factor**i for i in range(len(decay_steps) + 1)]
    return WarmupPiecewiseConstant(sorted(decay_steps), values, warmup_steps)
