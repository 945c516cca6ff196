"""The training loop pcl_tf runs under several replicas, where Keras 3's ``fit`` cannot be trusted.

Keras 3's ``fit`` fails under ``tf.distribute.MultiWorkerMirroredStrategy`` as shipped
(Keras 3.15, measured here). Under ``MirroredStrategy`` it runs, but a run does not match one device: 8 CE steps on real
Fashion-MNIST through pcl-train's pipeline over two logical CPUs end 0.0324 away (max weight
difference) from the same global batches on one device, against 1.64e-7 with this loop
(``bench/distribute_equality.py``, 2026-11-25; a one-step test with in-memory data does not show it). A plain ``strategy.run`` loop over the same
``train_step`` matches in both. So this is the smallest loop that keeps everything else the same: it distributes the global batches with
``strategy.experimental_distribute_dataset`` (each worker's share of every global batch, so the
workers together take exactly the batches one process would), runs
:meth:`pcl_tf.training.PCLModel.train_step` on every replica (the loss is already averaged over
the global batch there), and drives the very callbacks ``fit`` would — the PC schedule, the
non-finite guard, the step checkpoints — through a ``keras.callbacks.CallbackList``. Checkpoints,
resume and the data order are therefore the single-machine ones.
"""

from __future__ import annotations

import weakref
from typing import Dict, List, Sequence

import keras
import tensorflow as tf

# model -> its compiled distributed step, traced once and reused by every later fit() (as
# Keras keeps model.train_function).
_STEPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled_step(model, strategy):
    cached = _STEPS.get(model)
    if cached is not None and cached[0] is strategy:
        return cached[1]

    @tf.function
    def train_step(iterator):
        logs = strategy.run(model.train_step, args=(next(iterator),))
        # Each replica's metrics cover its equal share of every global batch seen this epoch,
        # so their mean over replicas (and workers) is the global value.
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for name, value in logs.items()}

    _STEPS[model] = (strategy, train_step)
    return train_step


def fit(
    model,
    strategy: tf.distribute.Strategy,
    dataset: tf.data.Dataset,
    *,
    epochs: int,
    initial_epoch: int,
    steps_per_epoch: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> Dict[str, List[float]]:
    """Trains ``model`` (built and compiled in ``strategy.scope()``) on ``dataset`` — global
    batches, repeated as often as needed — from ``initial_epoch`` to ``epochs``; returns the
    per-epoch history like ``fit(...).history``."""
    options = tf.data.Options()
    # Each worker keeps its slice of every global batch (the rebatched elements), not whole
    # files: the TFDS splits here are single files, and the data order must stay the global
    # step's (see pcl_tf.experiment), whatever the number of workers.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    iterator = iter(strategy.experimental_distribute_dataset(dataset.with_options(options)))
    train_step = _compiled_step(model, strategy)
    # params as Keras' fit sets them: StopAtTimeBudget reads the steps per epoch
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=model, epochs=epochs, steps=steps_per_epoch,
                                                 verbose=0)
    model.stop_training = False
    history: Dict[str, List[float]] = {}
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        logs = {}
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            logs = {name: float(value) for name, value in train_step(iterator).items()}
            callback_list.on_train_batch_end(step, logs)
        callback_list.on_epoch_end(epoch, logs)
        for name, value in logs.items():
            history.setdefault(name, []).append(value)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return history
