"""Robust early stopping (Rice, Wong & Kolter, ICML 2020): keep the epoch that is most robust on
held-out data, not the last one.

Adversarially trained networks overfit robustly: PGD accuracy on test data peaks (typically
just after the first learning-rate decay) and then falls while training accuracy keeps rising. At
the end of every epoch :class:`RobustValidation` measures clean, FGSM and robust accuracy (PGD-10
unless configured) on a held-out slice of the training split, adds them to the epoch's logs (so
Keras' history, TensorBoard and ``metrics.json`` carry them), and keeps a loadable copy of the best
epoch's model (highest robust accuracy; ties go to the earlier epoch). The same history shows catastrophic overfitting of
single-step training: PGD accuracy collapsing towards 0 within an epoch while FGSM accuracy rises
(the model has learnt to mask the one gradient step it is trained against).

The validation attack is PGD-10 on the cross-entropy by default (Rice et al.'s criterion) or APGD-CE
(AutoAttack's first attack, ``attack="apgd-ce"``). PGD-10 misses the subtler masking of long
single-step training (input gradients vanishing on some of the images): it then credits an epoch
with robustness that the strong evaluation takes away, and ranks epochs by it. APGD-CE's 100
iterations with momentum and an adaptive step see most of it, at several times PGD-10's cost
(bench/validation_attacks.py measures both on trained runs).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Dict, Optional

import keras
import tensorflow as tf
from absl import logging

from pcl_tf import io_utils
from pcl_tf.attacks import apgd, core

BEST_FILE = "best_robust.json"  # in the kept copy: which epoch it is and its validation accuracies
# The validation attacks and their default iterations: PGD (on the cross-entropy, 2.5 ε / steps from
# a random start, Madry et al.'s settings) and APGD-CE (AutoAttack's settings).
ATTACK_STEPS = {"pgd": 10, "apgd-ce": 100}


class RobustValidation(keras.callbacks.Callback):
    """Clean, FGSM and robust accuracy (under ``attack``) on ``dataset`` after every epoch; the best
    epoch's model (by robust accuracy) kept in ``directory``.

    Args:
      dataset: the held-out (images, labels) batches; never trained on.
      eps: the L∞ budget of the validation attacks.
      directory: where the best epoch's copy lives (a work dir ``pcl-attack`` takes).
      model_items: () -> the trackables to save (the model's weights and prototypes).
      write_files: (destination, epoch) -> None, writes config.json / metrics.json beside them.
      attack: "pgd" (cross-entropy PGD, steps of 2.5 ε / steps from a random start) or "apgd-ce"
        (one run of APGD on the cross-entropy); fixed seeds, so every epoch faces the same starts.
      steps: the attack's iterations (None: :data:`ATTACK_STEPS`).
    """

    def __init__(self, dataset, eps: float, directory: str, model_items: Callable[[], Dict], write_files,
                 attack: str = "pgd", steps: Optional[int] = None):
        super().__init__()
        if attack not in ATTACK_STEPS:
            raise ValueError(f"attack must be one of {', '.join(ATTACK_STEPS)}, got {attack!r}")
        self.dataset, self.eps, self.attack = dataset, float(eps), attack
        self.steps = ATTACK_STEPS[attack] if steps is None else int(steps)
        self.directory, self.model_items, self.write_files = directory, model_items, write_files
        self.best = self._saved_best()
        self._attack_and_counts = None

    def _saved_best(self) -> float:
        """The best robust accuracy kept so far (a resumed run keeps comparing against it)."""
        path = os.path.join(self.directory, BEST_FILE)
        return float(io_utils.read_json(path)["val_robust_accuracy"]) if os.path.exists(path) else -1.0

    def _make_attack_and_counts(self):
        """(attack(x, y, batch index) -> x_adv, counts(x, y, x_adv) -> clean, FGSM, robust correct)."""
        twin = self.model.inference_model()

        def ce(x, y):
            return core.mean_cross_entropy(twin(x, training=False), y)

        @tf.function
        def pgd(x, y, seed):
            return core.pgd(ce, x, y, self.eps, self.steps, 2.5 * self.eps / self.steps, seed=seed)

        def attack(x, y, index):
            if self.attack == "apgd-ce":  # compiles its own loop; takes an integer seed
                return apgd.apgd_ce(twin, x, y, self.eps, steps=self.steps, restarts=1, seed=1234 + index)
            return pgd(x, y, tf.constant([1234, index], tf.int32))

        @tf.function
        def counts(x, y, x_adv):
            def correct(images):
                predictions = tf.argmax(twin(images, training=False), 1, output_type=tf.int32)
                return tf.reduce_sum(tf.cast(tf.equal(predictions, y), tf.int32))

            return correct(x), correct(core.fgsm(ce, x, y, self.eps)), correct(x_adv)

        return attack, counts

    def measure(self) -> Dict[str, float]:
        """Clean, FGSM and robust accuracy of the current model on the validation slice."""
        if self._attack_and_counts is None:
            self._attack_and_counts = self._make_attack_and_counts()
        attack, counts = self._attack_and_counts
        clean = fgsm = robust = seen = 0
        for i, (x, y) in enumerate(self.dataset):
            y = tf.cast(y, tf.int32)
            c, f, r = counts(x, y, attack(x, y, i))
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
                                                                         "attack": self.attack,
                                                                         "attack_steps": self.steps, **result,
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
