"""bench/time_to_robustness.py: how a time budget becomes a schedule (the runs themselves are hours)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "bench"))

import time_to_robustness as ttr  # noqa: E402


def test_schedule_fills_the_budget_in_whole_epochs_or_two_passes_over_a_subset():
    # Planned for 1.5x the calibrated steps (the budget, not the epochs, ends a run).
    assert ttr.PLANNED_STEPS_OVER_CALIBRATED == 1.5
    # 1 step/s for 30 min: 2,700 planned steps = 11 full adversarial epochs of 235; 7.3 expected to
    # fit. PCL's clean CE warm-up comes on top: 1 epoch (1/7 of 1 + 7.3, rounded).
    assert ttr.plan_schedule(1.0, 30, pcl=False) == {"train.epochs": 11, "train.num_examples": 0, "train.warmup_epochs": 0}
    assert ttr.plan_schedule(1.0, 30, pcl=True) == {"train.epochs": 12, "train.num_examples": 0, "train.warmup_epochs": 1}
    # 3 steps/s for 60 min: 16,200 planned = 68 epochs, 45.3 expected: 8 warm-up epochs (8/53 ~ 1/7).
    assert ttr.plan_schedule(3.0, 60, pcl=True) == {"train.epochs": 76, "train.num_examples": 0, "train.warmup_epochs": 8}
    # 0.1 step/s (PGD-10 here) for 30 min = 270 planned steps: two passes over 135 batches of the
    # training set (plus the 1,000 images held out for robust early stopping); PCL's warm-up is one
    # clean pass over the same images first (a whole epoch is the least it can be).
    assert ttr.plan_schedule(0.1, 30, pcl=False) == {"train.epochs": 2, "train.num_examples": 135 * 256 + 1000,
                                                    "train.warmup_epochs": 0}
    assert ttr.plan_schedule(0.1, 30, pcl=True) == {"train.epochs": 3, "train.num_examples": 135 * 256 + 1000,
                                                   "train.warmup_epochs": 1}
    # The lr follows the clock, so the budget is what ends every run at lr 0.
    assert ttr.RECIPE["train.lr_schedule"] == "one_cycle_time"


def test_every_method_trains_at_the_same_eps_with_the_shared_recipe(tmp_path):
    for method in ttr.METHODS.values():
        args = ttr._train_args(method, str(tmp_path), 0.1, {"train.epochs": 3})
        assert f"--config={ttr.CNN6}:{method.variants}" in args
        assert "--config.adv.eps_min=0.1" in args and "--config.adv.eps_max=0.1" in args
        assert ("--config.adv.start=joint" in args) == method.pcl  # softmax methods attack from step 1
        assert all(f"--config.{k}={v}" in args for k, v in ttr.RECIPE.items())
