"""PCLModel: a Keras model whose ``train_step`` optimises CE + the PC losses of its branches.

Algorithm 1 of the paper: the network is first trained with cross-entropy alone for
``warmup_epochs`` (the :class:`PCLSchedule` callback holds the PC terms at weight 0), then with
``L = L_CE + sum_l L_PC^l`` (optionally plus a CE head per branch, Eq. 8). Network weights and
centroids have separate optimizers: ``compile(optimizer=..., centroid_optimizer=...)``, because
Algorithm 1 updates the centroids in their own step and the official code gives them their own
SGD at learning rate 0.5.

The same class trains the softmax baseline: with no branches there are no PC layers and the
step is plain CE (a configuration, not a second trainer).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from typing import Dict, Optional

import keras
import tensorflow as tf
from absl import logging

from pcl_tf import adversarial, losses
from pcl_tf.attacks import core
from pcl_tf.models import registry


# What adversarial training's attack maximises, and the objective it trains: "ce" (CE of the
# logits), "joint" (CE + PC, Algorithm 1's gradient), or "trades" (Zhang et al., ICML 2019: the
# attack maximises KL(p(x) || p(x')), the model minimises CE(clean) + beta * that KL).
ATTACK_LOSSES = ("ce", "joint", "trades")

# When adversarial training starts: with the joint loss after the CE warm-up (Algorithm 1 of the
# paper generates adversarial examples in its joint-loss phase), or from the first step.
ADVERSARY_STARTS = ("joint", "first_step")


@keras.saving.register_keras_serializable(package="pcl_tf")
class PCLModel(keras.Model):
    """Wraps a network built by :func:`pcl_tf.models.build_network` with the PC layers.

    ``call`` returns the logits (what Keras' ``predict`` and ``evaluate`` see); the PC layers are
    used only in ``train_step``/``test_step``. ``inference_model()`` is the logits-only twin that
    shares every weight: attacks and the export use it.
    """

    def __init__(
        self,
        network: keras.Model,
        num_classes: int,
        pc_mode: str = "paper",
        pull_weight: float = 1.0,
        push_weight: Optional[float] = None,
        push_margin: Optional[float] = 10.0,
        branch_ce_weight: float = 1.0,
        adversary: Optional[adversarial.AdversarialAugmentation] = None,
        attack_loss: str = "ce",
        adversary_start: str = "first_step",
        trades_beta: float = 6.0,
        push_centroid_lr_ratio: float = 1e-4 / 0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if attack_loss not in ATTACK_LOSSES:
            raise ValueError(f"attack_loss={attack_loss!r}; choose {', '.join(ATTACK_LOSSES)}")
        if attack_loss == "trades" and adversary is not None and not adversary.include_clean:
            raise ValueError("TRADES compares each clean image with its adversarial copy: keep the clean images "
                             "(include_clean=True)")
        self.trades_beta = float(trades_beta)
        if adversary_start not in ADVERSARY_STARTS:
            raise ValueError(f"adversary_start={adversary_start!r}; choose {' or '.join(ADVERSARY_STARTS)}")
        self.adversary = adversary
        self.attack_loss = attack_loss
        self.adversary_start = adversary_start
        self.network = network
        self.num_classes = int(num_classes)
        outputs = network.output
        self.feature_names = [n for n in outputs if n.startswith(registry.FEATURE_PREFIX)]
        self.aux_logit_names = [n for n in outputs if n.startswith(registry.AUX_LOGITS_PREFIX)]
        self.branch_ce_weight = float(branch_ce_weight)
        pc_layers = []
        for name in self.feature_names:
            layer = losses.PrototypeConformityLoss(
                num_classes,
                mode=pc_mode,
                pull_weight=pull_weight,
                push_weight=push_weight,
                push_margin=push_margin,
                push_centroid_lr_ratio=push_centroid_lr_ratio,
                name="pcl_" + name[len(registry.FEATURE_PREFIX):],
            )
            layer.build(outputs[name].shape)
            pc_layers.append(layer)
        self.pc_layers = pc_layers
        # Weight of the PC terms: 0 during the CE warm-up, 1 after (Algorithm 1). A variable, so
        # the compiled step reads it at run time and checkpoints carry it.
        self.pc_active = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="pc_active", dtype="float32"
        )
        self._trackers = {"loss": keras.metrics.Mean(name="loss"), "ce": keras.metrics.Mean(name="ce")}
        if attack_loss == "trades" and adversary is not None:
            self._trackers["kl"] = keras.metrics.Mean(name="kl")
        for layer in self.pc_layers:
            self._trackers[layer.name] = keras.metrics.Mean(name=layer.name)
        self._accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.centroid_optimizer = None

    # ----------------------------------------------------------------- Keras plumbing
    def call(self, inputs, training=False):
        return self.network(inputs, training=training)[registry.LOGITS]

    def inference_model(self) -> keras.Model:
        """Logits-only functional twin sharing every weight with this model."""
        return registry.logits_model(self.network)

    def checkpoint_items(self, optimizers: bool = True) -> Dict[str, object]:
        """The trackables a ``tf.train.Checkpoint`` of this model must hold, by name
        (``optimizers=False``: the weights and prototypes only, for copies that never train).

        Keras 3 keeps ``self.pc_layers`` in its own tracked list, which TensorFlow's checkpoint
        graph does not follow; naming every part explicitly also keeps checkpoint keys stable.
        """
        items = {"network": self.network, "pc_active": self.pc_active}
        items.update({layer.name: layer for layer in self.pc_layers})
        if not optimizers:
            return items
        if getattr(self, "optimizer", None) is not None:
            items["optimizer"] = self.optimizer
        if self.centroid_optimizer is not None:
            items["centroid_optimizer"] = self.centroid_optimizer
        return items

    @property
    def centroid_variables(self):
        return [w for layer in self.pc_layers for w in layer.trainable_weights]

    def compile(self, optimizer="adam", centroid_optimizer=None, jit_compile=False, **kwargs):
        """Like ``keras.Model.compile`` plus the centroids' own optimizer.

        ``jit_compile`` defaults to False: Keras' "auto" turns XLA on, which is slower on CPU.
        Both optimizers are built here, on the variables each one owns, so that neither
        creates slots for the other's variables (and so both are created inside whatever
        distribution scope ``compile`` runs in).
        """
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        self.optimizer.build(self.network.trainable_variables)
        if self.pc_layers:
            self.centroid_optimizer = keras.optimizers.get(centroid_optimizer or "sgd")
            self.centroid_optimizer.build(self.centroid_variables)
        self._centroid_scales = {}
        for layer in self.pc_layers:
            self._centroid_scales.update(layer.centroid_gradient_scales())

    @property
    def metrics(self):
        return list(self._trackers.values()) + [self._accuracy]

    # ----------------------------------------------------------------- the objective
    def compute_losses(self, x, y, training: bool, trades_pairs: bool = False) -> Dict[str, tf.Tensor]:
        """Forward pass and every loss term, unscaled: ``loss`` (the total), ``ce``, one per PC layer.

        The total is ``ce + sum(branch CE) + pc_active * sum(PC)``. Outputs are cast to float32
        before the losses (mixed precision keeps logits and prototypes in float32).

        ``trades_pairs``: ``x`` is ``[clean; adversarial]`` (two halves, one forward pass): CE and
        the PC terms are computed on the clean half, and ``trades_beta * KL(p(clean) || p(adv))``
        is added (term ``kl``), as TRADES trains.
        """
        outputs = self.network(x, training=training)
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        kl = None
        if trades_pairs:
            half = tf.shape(y)[0] // 2
            logits = tf.cast(outputs[registry.LOGITS], tf.float32)
            kl = _mean_kl(logits[:half], logits[half:])
            outputs = {name: value[:half] for name, value in outputs.items()}
            y = y[:half]
        ce = core.mean_cross_entropy(outputs[registry.LOGITS], y)
        terms = {"ce": ce}
        total = ce
        if kl is not None:
            terms["kl"] = kl
            total += self.trades_beta * kl
        # The branch CE heads and PC terms: the function the adaptive attack maximises too.
        terms["loss"] = core.add_prototype_terms(self, outputs, y, total, self.pc_active, terms)
        terms["logits"] = outputs[registry.LOGITS]
        terms["labels"] = y  # the clean half's with trades_pairs
        return terms

    def augment(self, x, y):
        """The batch a training step updates on: ``(x, y)`` itself, or with the adversarial
        copies of :attr:`adversary` made against the current model in inference mode.

        ``adversary_start="first_step"`` (the default here) augments every step, as Madry et al.
        train. With ``"joint"`` (Algorithm 1; what pcl-train's configs use for PCL + AdvTrain) the
        copies are made only once the joint loss is on (``pc_active`` = 1, which
        :class:`PCLSchedule` sets after the CE warm-up); before that the step trains on the clean
        batch."""
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        if self.adversary is None:
            return x, y

        def adversarial_batch():
            loss_fn = self._trades_loss_to_attack(x) if self.attack_loss == "trades" else self._loss_to_attack
            return self.adversary(loss_fn, x, y, step=self.optimizer.iterations)

        def clean_batch():
            x_clean = tf.convert_to_tensor(x)
            if self.attack_loss == "trades":  # the pair (x, x): KL 0, so the step is plain CE
                return tf.concat([x_clean, x_clean], axis=0), tf.concat([y, y], axis=0)
            return x_clean, y

        if self.adversary_start == "first_step":
            return adversarial_batch()
        # The two branches differ in batch size when the clean images are kept: fine for
        # tf.cond in a graph (the batch dimension becomes unknown), and the losses are means.
        return tf.cond(self.pc_active > 0.0, adversarial_batch, clean_batch)

    def _loss_to_attack(self, x, y):
        """What adversarial training maximises: CE of the logits, the whole objective
        (``attack_loss="joint"``: Algorithm 1's gradient of L w.r.t. x), or, for TRADES, the KL
        divergence from the clean image's prediction (:meth:`augment` binds that). Inference
        mode, so the attack's passes leave BatchNorm statistics untouched."""
        if self.attack_loss == "joint":
            return self.compute_losses(x, y, training=False)["loss"]
        return core.mean_cross_entropy(self.network(x, training=False)[registry.LOGITS], y)

    def _trades_loss_to_attack(self, x_clean):
        """KL(p(x_clean) || p(x')) as a function of x', the clean prediction held fixed."""
        clean_logits = tf.stop_gradient(tf.cast(self.network(x_clean, training=False)[registry.LOGITS], tf.float32))
        return lambda v, t: _mean_kl(clean_logits, tf.cast(self.network(v, training=False)[registry.LOGITS], tf.float32))

    def train_step(self, data):
        x, y = self.augment(data[0], data[1])
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            terms = self.compute_losses(x, y, training=True,
                                        trades_pairs=self.attack_loss == "trades" and self.adversary is not None)
            # Each replica's loss is a mean over its own share of the global batch; the
            # gradients are summed over replicas, so dividing by their number gives the
            # gradient of the mean over the global batch. Under mixed_float16 the optimizer is
            # a LossScaleOptimizer and scale_loss multiplies by its dynamic scale (else: x1).
            scaled = self.optimizer.scale_loss(terms["loss"] / replicas)
        loss_scale = tf.identity(getattr(self.optimizer, "dynamic_scale", 1.0))  # before apply() moves it
        network_vars = self.network.trainable_variables
        centroid_vars = self.centroid_variables
        grads = tape.gradient(scaled, network_vars + centroid_vars)
        self.optimizer.apply(grads[: len(network_vars)], network_vars)  # unscales, skips overflow steps
        if centroid_vars:
            centroid_grads = [
                _unscaled(g, loss_scale) * self._centroid_scales.get(v.path, 1.0)
                for g, v in zip(grads[len(network_vars):], centroid_vars)
            ]
            self.centroid_optimizer.apply(centroid_grads, centroid_vars)
        return self._update_metrics(terms, y)

    def test_step(self, data):
        x, y = data[0], data[1]
        return self._update_metrics(self.compute_losses(x, y, training=False), y)

    def _update_metrics(self, terms, y):
        for name, tracker in self._trackers.items():
            if name in terms:  # "kl" exists only in TRADES training steps
                tracker.update_state(terms[name])
        self._accuracy.update_state(terms["labels"], terms["logits"])
        return {m.name: m.result() for m in self.metrics}

    # ----------------------------------------------------------------- inference helpers
    def init_centroids_from_class_means(self, dataset, num_batches: int) -> None:
        """Sets every prototype (pull and push sets alike) to its class's mean feature vector over
        ``num_batches`` batches of ``dataset``, computed in inference mode.

        Used when the PC terms switch on after the CE warm-up: N(0, 1) centroids sit far from the
        features the warm-up learned, and pulling each class onto a random point undoes that
        training (on Fashion-MNIST CE rose from 0.87 to 2.2 in the first joint epoch, against
        0.87 falling to 0.69 with this start). A class missing from those batches keeps its
        centroid.
        """
        sums = {name: 0.0 for name in self.feature_names}
        counts = tf.zeros([self.num_classes])
        for x, y in dataset.take(num_batches):
            outputs = self.network(x, training=False)
            one_hot = tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), self.num_classes)
            counts += tf.reduce_sum(one_hot, axis=0)
            for name in self.feature_names:
                sums[name] += tf.matmul(one_hot, tf.cast(outputs[name], tf.float32), transpose_a=True)
        present = (counts > 0)[:, None]
        for name, layer in zip(self.feature_names, self.pc_layers):
            means = sums[name] / tf.maximum(counts, 1.0)[:, None]
            for variable in layer.trainable_weights:
                variable.assign(tf.where(present, means, variable))

    def nearest_prototype_predictions(self, x) -> Dict[str, tf.Tensor]:
        """Eq. 6 per PC layer: class ids of the nearest prototype to that layer's features."""
        outputs = self.network(x, training=False)
        return {
            layer.name: layer.nearest_prototype(outputs[name])
            for name, layer in zip(self.feature_names, self.pc_layers)
        }


def _unscaled(grad, loss_scale):
    """A centroid gradient without the loss scale; zero where a float16 step overflowed (the
    network's optimizer skips that step too)."""
    grad = grad / tf.cast(loss_scale, grad.dtype)
    return tf.where(tf.math.is_finite(grad), grad, tf.zeros_like(grad))


def _mean_kl(logits_p, logits_q):
    """Batch mean of KL(softmax(p) || softmax(q)), summed over classes (TRADES' KL term)."""
    log_p = tf.nn.log_softmax(logits_p)
    return tf.reduce_mean(tf.reduce_sum(tf.exp(log_p) * (log_p - tf.nn.log_softmax(logits_q)), axis=-1))


class PCLSchedule(keras.callbacks.Callback):
    """Switches the PC terms on after ``warmup_epochs`` of CE alone (Algorithm 1, T').

    With ``init_dataset``, the prototypes are set to the class means of the features at that
    moment (see :meth:`PCLModel.init_centroids_from_class_means`), once: a run resumed after
    the switch keeps the centroids its checkpoint holds. With ``reset_optimizer``, both optimizers'
    state (momentum) is zeroed at that moment too (:func:`reset_optimizer_state`; the released
    code's joint stage starts with a fresh optimizer), also once.
    """

    def __init__(self, warmup_epochs: int, init_dataset=None, init_batches: int = 20,
                 reset_optimizer: bool = False):
        super().__init__()
        self.warmup_epochs = int(warmup_epochs)
        self.init_dataset = init_dataset
        self.init_batches = int(init_batches)
        self.reset_optimizer = bool(reset_optimizer)

    def on_epoch_begin(self, epoch, logs=None):
        switching_on = epoch >= self.warmup_epochs and float(self.model.pc_active.numpy()) == 0.0
        # Only at the switch itself: a run resumed mid-way through the first joint epoch has
        # pc_active = 1 in its checkpoint and keeps the centroids (and momentum) it trained.
        if switching_on and self.init_dataset is not None and self.model.pc_layers:
            self.model.init_centroids_from_class_means(self.init_dataset, self.init_batches)
        if switching_on and self.reset_optimizer and epoch > 0:
            reset_optimizer_state(self.model.optimizer)
            if self.model.centroid_optimizer is not None:
                reset_optimizer_state(self.model.centroid_optimizer)
            logging.info("joint loss on at epoch %d: optimizer state reset (train.reset_optimizer_at_pcl_start)", epoch + 1)
        self.model.pc_active.assign(1.0 if epoch >= self.warmup_epochs else 0.0)


def reset_optimizer_state(optimizer) -> None:
    """Zeroes an optimizer's slots (SGD's momentum, Adam's moment estimates), as a freshly made
    optimizer would hold them; the step count (which the lr schedule reads) and the learning rate
    are kept. A LossScaleOptimizer's inner optimizer is reset, its loss scale kept.

    The released code starts its joint stage this way: its attempt to load the softmax stage's
    optimizer state is an assignment that loads nothing (``train.reset_optimizer_at_pcl_start``).
    Adam's bias correction still counts from the run's first step."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    keep = {id(inner.iterations)}
    if isinstance(getattr(inner, "_learning_rate", None), keras.Variable):
        keep.add(id(inner._learning_rate))
    for variable in inner.variables:
        if id(variable) not in keep:
            variable.assign(tf.zeros_like(variable))


WEIGHT_DECAY_MODES = ("decoupled", "coupled")


class _CoupledWeightDecay:
    """L2 regularisation as PyTorch's SGD applies it: ``coupled_weight_decay * w`` is added to
    each variable's gradient before the update rule (and so before momentum), after any gradient
    clipping. Keras' own ``weight_decay`` is decoupled instead: ``w -= lr * wd * w`` beside the
    update, outside momentum. With momentum 0.9 the coupled decay's effective shrinkage is ~10x
    larger at the same lr (the decay accumulates in the velocity)."""

    def __init__(self, *args, coupled_weight_decay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.coupled_weight_decay = float(coupled_weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        if self.coupled_weight_decay and self._use_weight_decay(variable):
            gradient = gradient + tf.cast(self.coupled_weight_decay, gradient.dtype) * tf.cast(variable, gradient.dtype)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}


@keras.saving.register_keras_serializable(package="pcl_tf")
class CoupledSGD(_CoupledWeightDecay, keras.optimizers.SGD):
    """Keras SGD with PyTorch's coupled L2 weight decay (see :class:`_CoupledWeightDecay`)."""


@keras.saving.register_keras_serializable(package="pcl_tf")
class CoupledAdam(_CoupledWeightDecay, keras.optimizers.Adam):
    """Keras Adam with coupled L2 weight decay (PyTorch's ``Adam(weight_decay=...)``)."""


def make_optimizer(name: str, learning_rate, momentum: float = 0.9, weight_decay: float = 0.0,
                   clip_global_norm: float = 0.0, weight_decay_mode: str = "decoupled"):
    """``sgd`` (with momentum) or ``adam``.

    ``weight_decay_mode``: ``"decoupled"`` (the default: Keras' ``weight_decay``, applied beside
    the update) or ``"coupled"`` (L2 added to the gradient before momentum, as PyTorch's SGD and
    the released PCL code do; :class:`CoupledSGD`).

    ``clip_global_norm`` > 0 rescales the network's gradients so that their global norm is at
    most that (Keras' ``global_clipnorm``); 0 leaves them alone."""
    if weight_decay_mode not in WEIGHT_DECAY_MODES:
        raise ValueError(f"unknown weight decay mode {weight_decay_mode!r}; choose {' or '.join(WEIGHT_DECAY_MODES)}")
    clip = {"global_clipnorm": float(clip_global_norm)} if clip_global_norm else {}
    if weight_decay_mode == "coupled":
        decay = {"coupled_weight_decay": float(weight_decay)}
        classes = {"sgd": CoupledSGD, "adam": CoupledAdam}
    else:
        decay = {"weight_decay": weight_decay or None}
        classes = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}
    if name == "sgd":
        return classes["sgd"](learning_rate, momentum=momentum, **decay, **clip)
    if name == "adam":
        return classes["adam"](learning_rate, **decay, **clip)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd or adam")


class StopOnInterrupt(keras.callbacks.Callback):
    """Turns Ctrl-C into a KeyboardInterrupt raised between two training steps.

    Inside :meth:`catching_sigint` (main thread only) SIGINT just sets a flag; the first
    ``on_train_batch_end`` after it raises KeyboardInterrupt, so the step's bookkeeping is done and
    the caller can checkpoint exactly that step."""

    def __init__(self):
        super().__init__()
        self.requested = False

    @contextlib.contextmanager
    def catching_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request(signum, frame):
            self.requested = True

        previous = signal.signal(signal.SIGINT, request)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def on_train_batch_end(self, batch, logs=None):
        if self.requested:
            raise KeyboardInterrupt


class TrainingDivergedError(RuntimeError):
    """A loss term became NaN or infinite; the message names the step and the term."""


class TimeBudgetReached(Exception):
    """Training used its ``train.time_budget_minutes``; raised between two steps."""


class StopAtTimeBudget(keras.callbacks.Callback):
    """Ends training at the first step boundary after ``budget_seconds`` of training time, counted
    by ``elapsed`` over every session of the run (a resumed run continues the count): for
    comparisons at equal compute. Mid-epoch it raises :class:`TimeBudgetReached` from the step
    itself, so a partial epoch is never reported, snapshotted or counted as a finished epoch. When
    the budget runs out on an epoch's last step, that epoch is finished: every epoch-end callback
    (checkpoint, snapshot, robust validation, history) runs first, then this one raises, so it must
    be the last callback. The steps of an epoch come from Keras' ``params["steps"]``."""

    def __init__(self, budget_seconds: float, elapsed):
        super().__init__()
        self.budget_seconds, self.elapsed = float(budget_seconds), elapsed
        self._reached_on_last_step = False

    def _reached(self):
        return TimeBudgetReached(f"time budget of {self.budget_seconds / 60:g} minutes reached")

    def on_train_batch_end(self, batch, logs=None):
        if self.elapsed() >= self.budget_seconds:
            if batch + 1 < self.params["steps"]:
                raise self._reached()
            self._reached_on_last_step = True

    def on_epoch_end(self, epoch, logs=None):
        if self._reached_on_last_step:
            raise self._reached()


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first step whose loss terms are not finite.

    Raises :class:`TrainingDivergedError` from the step itself, so the epoch-end checkpoint of
    a diverged epoch is never written and the last good checkpoint stays the latest. The
    message names the global step and the first offending term (a component — ``ce`` or a
    ``pcl_<layer>`` — before the total).
    """

    def __init__(self, steps_per_epoch: int):
        super().__init__()
        self.steps_per_epoch = int(steps_per_epoch)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        names = sorted(logs, key=lambda n: (n == "loss", n))
        for name in names:
            value = float(logs[name])
            if not math.isfinite(value):
                step = self._epoch * self.steps_per_epoch + batch + 1
                raise TrainingDivergedError(
                    f"training diverged at step {step} (epoch {self._epoch + 1}): loss term {name!r} is "
                    f"{value}; nothing of this step was saved. Lower the learning rate (--config.train.lr), "
                    f"clip the gradients (--config.train.clip_global_norm) or lower the PCL weights"
                )
