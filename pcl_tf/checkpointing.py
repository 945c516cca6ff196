"""Checkpoints of a training run: what they hold, when they are written, how a run resumes.

A checkpoint holds the network, the centroids, both optimizers, the PC switch, and the run's
bookkeeping: ``step`` (optimizer steps done, over all sessions), ``epoch`` (epochs finished) and
``train_seconds``. :class:`StepCheckpoint` writes one every N steps and every M epochs; TensorFlow
writes each checkpoint under a temporary name and renames it, and the ``checkpoint`` index file
is replaced atomically, so a run killed at any moment leaves the previous checkpoint intact.
:func:`restore_latest` falls back to an older checkpoint, naming the file, when the newest one
cannot be read (truncated or corrupt) — for training; evaluation and export must ask for it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from typing import Optional

import keras
import tensorflow as tf
from absl import logging


class CheckpointError(ValueError):
    """No checkpoint of a work dir could be read; the message names the files."""


@dataclasses.dataclass
class RunState:
    """Bookkeeping variables saved with every checkpoint."""

    step: tf.Variable
    epoch: tf.Variable
    seconds: tf.Variable

    @classmethod
    def create(cls) -> "RunState":
        return cls(
            step=tf.Variable(0, dtype=tf.int64, trainable=False, name="step"),
            epoch=tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch"),
            seconds=tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds"),
        )


def make_manager(model, state: RunState, directory: str, max_to_keep: int = 3) -> tf.train.CheckpointManager:
    checkpoint = tf.train.Checkpoint(
        step=state.step, epoch=state.epoch, train_seconds=state.seconds, **model.checkpoint_items()
    )
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)


def newest_checkpoint_name(directory: str) -> Optional[str]:
    """The file prefix (e.g. ``ckpt-1200``) of the newest checkpoint that the tf.train
    ``checkpoint`` index in ``directory`` names, or None; read without TensorFlow."""
    index = os.path.join(directory, "checkpoint")
    if not os.path.exists(index):
        return None
    with open(index, encoding="utf-8") as f:
        for line in f:
            if line.startswith("model_checkpoint_path:"):
                return os.path.basename(line.split(":", 1)[1].strip().strip('"'))
    return None


def newest_step(directory: str) -> int:
    """The step of the newest checkpoint in ``directory`` (0 when there is none)."""
    suffix = (newest_checkpoint_name(directory) or "").rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def _listed_checkpoints(manager: tf.train.CheckpointManager) -> list:
    """Every checkpoint the ``checkpoint`` index of the manager's directory names, oldest first.

    Not ``manager.checkpoints``: tf.train.CheckpointManager drops the listed checkpoints when the
    index has no timestamps (an index written by hand or by a copy tool), and a run restored
    from that list would silently start from scratch (seen: a stashed run "resuming from step
    940" that trained from step 0)."""
    state = tf.train.get_checkpoint_state(manager.directory)
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    return paths


def restore_latest(manager: tf.train.CheckpointManager, model, allow_older: bool = True) -> Optional[str]:
    """Restores the newest readable checkpoint and returns its path (None: fresh start).

    Every part of the model and both optimizers must be in it; the bookkeeping may predate a
    field and then keeps its default. An unreadable checkpoint is reported by name and the
    next older one is tried; if none can be read, :class:`CheckpointError` names them all.
    With ``allow_older=False`` (evaluation and export: the result must describe the model the
    work dir claims) an unreadable newest checkpoint is an error that names the older one.
    """
    failures = []
    for path in reversed(_listed_checkpoints(manager)):
        if failures and not allow_older:
            raise CheckpointError(
                f"the newest checkpoint {failures[0]} cannot be read; the one before it is {path}. Pass "
                "--allow_older_checkpoint to use it (the report or export will say so), or retrain")
        try:
            manager.checkpoint.restore(path).expect_partial()
            tf.train.Checkpoint(**model.checkpoint_items()).restore(path).expect_partial().assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 - a torn file fails in many ways (IndexError, DataLossError, ...)
            reason = " ".join(str(e).split())[:200]
            logging.warning("checkpoint %s cannot be read (%s); trying the one before it", path, reason)
            failures.append(f"{path} ({reason})")
            continue
        if failures:
            logging.warning("resumed from %s; unreadable newer checkpoints: %s", path, "; ".join(failures))
        return path
    if failures:
        raise CheckpointError(
            "no checkpoint could be read: " + "; ".join(failures)
            + ". Move the checkpoints/ folder aside to train from scratch"
        )
    return None


class StepCheckpoint(keras.callbacks.Callback):
    """Counts steps and seconds; saves every ``every_steps`` steps (0: never mid-epoch), every
    ``every_epochs`` epochs and after the last epoch. Put it after
    :class:`pcl_tf.training.NonFiniteGuard`, so that a diverged step is never saved."""

    def __init__(self, manager, state: RunState, every_steps: int, every_epochs: int, last_epoch: int):
        super().__init__()
        self.manager, self.state = manager, state
        self.every_steps, self.every_epochs, self.last_epoch = int(every_steps), int(every_epochs), int(last_epoch)

    def on_train_begin(self, logs=None):
        self._start, self._seconds_before = time.time(), float(self.state.seconds.numpy())

    def elapsed(self) -> float:
        """Seconds of training over every session of the run, up to now."""
        return self._seconds_before + time.time() - self._start

    def on_train_batch_begin(self, batch, logs=None):
        # The run's training time, current before every step: the time-budget lr schedule
        # (pcl_tf.schedule.BudgetOneCycle) reads it inside the step.
        self.state.seconds.assign(self.elapsed())

    def _save(self):
        self.state.seconds.assign(self.elapsed())
        return self.manager.save(checkpoint_number=int(self.state.step.numpy()))

    def save_now(self) -> str:
        """Writes a checkpoint of the current step (e.g. on Ctrl-C) and returns its path."""
        if not hasattr(self, "_start"):  # interrupted before training began
            self.on_train_begin()
        return self._save()

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.state.step.assign_add(1).numpy())
        if self.every_steps and step % self.every_steps == 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        self.state.epoch.assign(epoch + 1)
        if (epoch + 1) % self.every_epochs == 0 or epoch + 1 == self.last_epoch:
            self._save()


class EpochSnapshots(keras.callbacks.Callback):
    """Keeps a loadable copy of the model at the end of chosen epochs, beside the run's own
    checkpoints (which rotate): ``<directory>/epoch_<E>/`` with ``checkpoints/`` (network,
    prototypes and the run's bookkeeping, no optimizer state) plus whatever ``write_files``
    writes into it (the work dir's config.json and a metrics.json).

    One long run then gives several budgets of the same schedule. Each snapshot is written to a
    temporary sibling and renamed, so a killed run never leaves half a snapshot; one that exists
    is kept as it is (a resumed run does not rewrite it).
    """

    def __init__(self, directory: str, epochs, model_items, state: RunState, write_files):
        super().__init__()
        self.directory = directory
        self.epochs = {int(e) for e in epochs}
        self.model_items = model_items  # () -> the trackables to save (the model's, no optimizer)
        self.state = state
        self.write_files = write_files  # (destination, epoch) -> None

    @staticmethod
    def path(directory: str, epoch: int) -> str:
        return os.path.join(directory, f"epoch_{int(epoch):03d}")

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        destination = self.path(self.directory, done)
        if done not in self.epochs or os.path.exists(destination):
            return
        os.makedirs(self.directory, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=f".epoch_{done:03d}.", dir=self.directory)
        try:
            checkpoint = tf.train.Checkpoint(step=self.state.step, epoch=self.state.epoch,
                                             train_seconds=self.state.seconds, **self.model_items())
            tf.train.CheckpointManager(checkpoint, os.path.join(scratch, "checkpoints"), max_to_keep=1).save(
                checkpoint_number=int(self.state.step.numpy()))
            self.write_files(scratch, done)
            os.rename(scratch, destination)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        logging.info("snapshot of epoch %d written to %s", done, destination)
