"""Robust early stopping (Rice, Wong & Kolter, ICML 2020): keep the epoch that is most robust on
held-out data, not the last one.

Adversarially trained networks overfit robustly: PGD accuracy on test data peaks (typically
just after the first learning-rate decay) and then falls while training accuracy keeps rising. At
the end of every epoch :class:`RobustValidation` measures clean, FGSM and PGD-10 accuracy on a
held-out slice of the training split, adds both to the epoch's logs (so Keras' history, TensorBoard and
``metrics.json`` carry them), and keeps a loadable copy of the best epoch's model (highest PGD
accuracy; ties go to the earlier epoch). The same history shows catastrophic overfitting of
single-step training: PGD accuracy collapsing towards 0 within an epoch while FGSM accuracy rises
(the model has learnt to mask the one gradient step it is trained against).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Dict

import keras
import tensorflow as tf
from absl import logging

from pcl_tf import io_utils
from pcl_tf.attacks import core

BEST_FILE = "best_robust.json"  # in the kept copy: which epoch it is and its validation accuracies


class RobustValidation(keras.callbacks.Callback):
    """Clean, FGSM and PGD accuracy on ``dataset`` after every epoch; the best epoch's model (by
    PGD accuracy) kept in ``directory``.

    Args:
      dataset: the held-out (images, labels) batches; never trained on.
      eps: the L∞ budget of the validation attack; PGD with ``steps`` steps of 2.5 ε / steps from
        a random start (Madry et al.'s settings; fixed seeds, so every epoch faces the same starts).
      directory: where the best epoch's copy lives (a work dir ``pcl-attack`` takes).
      model_items: () -> the trackables to save (the model's weights and prototypes).
      write_files: (destination, epoch) -> None, writes config.json / metrics.json beside them.
    """

    def __init__(self, dataset, eps: float, directory: str, model_items: Callable[[], Dict], write_files,
                 steps: int = 10):
        super().__init__()
        self.dataset, self.eps, self.steps = dataset, float(eps), int(steps)
        self.directory, self.model_items, self.write_files = directory, model_items, write_files
        self.best = self._saved_best()
        self._counts = None

    def _saved_best(self) -> float:
        """The best PGD accuracy kept so far (a resumed run keeps comparing against it)."""
        path = os.path.join(self.directory, BEST_FILE)
        return float(io_utils.read_json(path)["val_robust_accuracy"]) if os.path.exists(path) else -1.0

    def _make_counts(self):
        twin = self.model.inference_model()

        def ce(x, y):
            return core.mean_cross_entropy(twin(x, training=False), y)

        @tf.function
        def counts(x, y, seed):
            y = tf.cast(y, tf.int32)
            x_adv = core.pgd(ce, x, y, self.eps, self.steps, 2.5 * self.eps / self.steps, seed=seed)

            def correct(images):
                predictions = tf.argmax(twin(images, training=False), 1, output_type=tf.int32)
                return tf.reduce_sum(tf.cast(tf.equal(predictions, y), tf.int32))

            return correct(x), correct(core.fgsm(ce, x, y, self.eps)), correct(x_adv)

        return counts

    def measure(self) -> Dict[str, float]:
        """Clean, FGSM and PGD accuracy of the current model on the validation slice."""
        if self._counts is None:
            self._counts = self._make_counts()
        clean = fgsm = robust = seen = 0
        for i, (x, y) in enumerate(self.dataset):
            c, f, r = self._counts(x, y, tf.constant([1234, i], tf.int32))
            clean, fgsm, robust, seen = clean + int(c), fgsm + int(f), robust + int(r), seen + int(tf.shape(y)[0])
        if seen == 0:
            raise ValueError("the robust validation slice is empty")
        return {"val_clean_accuracy": clean / seen, "val_fgsm_accuracy": fgsm / seen, "val_robust_accuracy": robust / seen}

    def on_epoch_end(self, epoch, logs=None):
        result = self.measure()
        if logs is not None:
            logs.update(result)
        if result["val_robust_accuracy"] > self.best:
            self.best = result["val_robust_accuracy"]
            self._keep(epoch + 1, result)

    def validate_unfinished_epoch(self, epoch: int, step: int) -> Dict:
        """Validates the model where a time budget stopped it, inside epoch ``epoch`` (1-based) at
        global step ``step``, and keeps it when it is the most robust so far.

        A budget-ended run stops mid-epoch, after the steps where a time-based schedule (one-cycle
        over the budget) anneals the learning rate to 0: often its best weights, which epoch-end
        validation alone would never see. Returns the measurement with ``step``, ``epoch`` and
        ``kept``; the kept copy's best_robust.json says ``unfinished_epoch`` and the step."""
        result = self.measure()
        kept = result["val_robust_accuracy"] > self.best
        if kept:
            self.best = result["val_robust_accuracy"]
            self._keep(epoch, result, {"step": int(step), "unfinished_epoch": True})
        return {"epoch": int(epoch), "step": int(step), **result, "kept": kept}

    def _keep(self, epoch: int, result: Dict[str, float], extra: Dict = None) -> None:
        """Replaces the kept copy by this epoch's model (written beside it, then swapped in)."""
        parent = os.path.dirname(os.path.abspath(self.directory))
        os.makedirs(parent, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix="." + os.path.basename(self.directory) + ".", dir=parent)
        try:
            checkpoint = tf.train.Checkpoint(**self.model_items())
            tf.train.CheckpointManager(checkpoint, os.path.join(scratch, "checkpoints"), max_to_keep=1).save(
                checkpoint_number=epoch)
            self.write_files(scratch, epoch)
            io_utils.write_json_atomic(os.path.join(scratch, BEST_FILE), {"epoch": epoch, "eps": self.eps,
                                                                         "pgd_steps": self.steps, **result,
                                                                         **(extra or {})})
            old = self.directory + ".old"
            if os.path.exists(self.directory):
                os.rename(self.directory, old)
            os.rename(scratch, self.directory)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        logging.info("epoch %d is the most robust so far (%.4f): kept in %s", epoch, result["val_robust_accuracy"],
                     self.directory)
