"""Robust early stopping's measurement (pcl_tf/early_stopping.py) on a tiny linear classifier: the
validation attack is the one configured, and what it returns is what gets counted and kept."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from pcl_tf import early_stopping
from pcl_tf.attacks import apgd


class _Twin:
    """What RobustValidation needs of a PCLModel: ``inference_model()``, the logits-only network."""

    def __init__(self, network):
        self.network = network

    def inference_model(self):
        return self.network


def _linear_classifier_and_data(n=64):
    """Two classes told apart by the mean pixel: robust at ε far below the margin, not above it."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = np.clip(0.3 + 0.4 * y[:, None, None, None] + rng.uniform(-0.05, 0.05, (n, 4, 4, 1)), 0, 1).astype(np.float32)
    network = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    weights = np.zeros((16, 2), np.float32)
    weights[:, 1] = 10.0 / 16  # logit_1 - logit_0 = 10 (mean pixel - 0.5)
    network.layers[-1].set_weights([weights, np.array([0.0, -5.0], np.float32)])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    return network, dataset


def _validation(tmp_path, network, dataset, eps, **kwargs):
    callback = early_stopping.RobustValidation(dataset, eps, str(tmp_path / "best_robust"),
                                               lambda: {"network": network}, lambda destination, epoch: None,
                                               **kwargs)
    callback.set_model(_Twin(network))
    return callback


@pytest.mark.parametrize("attack", ["pgd", "apgd-ce"])
def test_robust_accuracy_falls_from_all_to_none_as_eps_crosses_the_margin(tmp_path, attack):
    network, dataset = _linear_classifier_and_data()
    small = _validation(tmp_path, network, dataset, 0.05, attack=attack).measure()
    large = _validation(tmp_path, network, dataset, 0.3, attack=attack).measure()
    assert small == {"val_clean_accuracy": 1.0, "val_fgsm_accuracy": 1.0, "val_robust_accuracy": 1.0}
    assert large["val_clean_accuracy"] == 1.0 and large["val_robust_accuracy"] == 0.0


def test_apgd_ce_validation_runs_apgd_with_its_iterations_and_counts_what_it_returns(tmp_path, monkeypatch):
    network, dataset = _linear_classifier_and_data()
    calls = []

    def spy(model_fn, x, y, eps, steps, restarts, seed):
        calls.append((float(eps), steps, restarts, seed))
        flipped = 1.0 - x  # the other class for every image: the robust count must come from here
        return tf.where(tf.reshape(tf.equal(y, 0), [-1, 1, 1, 1]), flipped, x)

    monkeypatch.setattr(apgd, "apgd_ce", spy)
    callback = _validation(tmp_path, network, dataset, 0.05, attack="apgd-ce")
    assert callback.measure()["val_robust_accuracy"] == 0.5  # class 0 flipped, class 1 kept
    assert calls == [(0.05, 100, 1, 1234), (0.05, 100, 1, 1235)]  # AutoAttack's 100 iterations, one seed per batch
    calls.clear()
    _validation(tmp_path, network, dataset, 0.05, attack="apgd-ce", steps=7).measure()
    assert [c[1] for c in calls] == [7, 7]
    calls.clear()
    _validation(tmp_path, network, dataset, 0.05).measure()  # PGD by default: APGD never called
    assert calls == []


def test_the_kept_copy_names_its_validation_attack(tmp_path):
    network, dataset = _linear_classifier_and_data()
    callback = _validation(tmp_path, network, dataset, 0.05, attack="apgd-ce", steps=5)
    callback.on_epoch_end(0, {})
    with open(os.path.join(tmp_path, "best_robust", early_stopping.BEST_FILE)) as f:
        best = json.load(f)
    assert (best["epoch"], best["attack"], best["attack_steps"], best["val_robust_accuracy"]) == (1, "apgd-ce", 5, 1.0)


def test_an_unknown_validation_attack_is_refused(tmp_path):
    network, dataset = _linear_classifier_and_data()
    with pytest.raises(ValueError, match="attack must be one of pgd, apgd-ce, got 'square'"):
        _validation(tmp_path, network, dataset, 0.05, attack="square")
