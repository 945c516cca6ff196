"""bench/time_to_robustness.py: how a time budget becomes a schedule (the runs themselves are hours)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "bench"))

import time_to_robustness as ttr  # noqa: E402


def test_schedule_fills_the_budget_in_whole_epochs_or_two_passes_over_a_subset():
    # Planned at 3/4 of the calibrated speed (the per-epoch validation and checkpoints slow a run).
    assert ttr.PLANNED_SHARE_OF_CALIBRATED_SPEED == 0.75
    # 1 step/s for 30 min: 1,350 planned steps = 5 full epochs, 1 of them (1/7, rounded) CE warm-up for PCL.
    assert ttr.plan_schedule(1.0, 30, pcl=True) == {"train.epochs": 5, "train.num_examples": 0, "train.warmup_epochs": 1}
    assert ttr.plan_schedule(1.0, 30, pcl=False)["train.warmup_epochs"] == 0
    # 0.1 step/s (PGD-10 here) for 30 min = 135 planned steps: two passes over 67 batches of the training
    # set (plus the 1,000 images held out for robust early stopping).
    assert ttr.plan_schedule(0.1, 30, pcl=False) == {"train.epochs": 2, "train.num_examples": 67 * 256 + 1000,
                                                    "train.warmup_epochs": 0}


def test_every_method_trains_at_the_same_eps_with_the_shared_recipe(tmp_path):
    for method in ttr.METHODS.values():
        args = ttr._train_args(method, str(tmp_path), 0.1, {"train.epochs": 3})
        assert f"--config={ttr.CNN6}:{method.variants}" in args
        assert "--config.adv.eps_min=0.1" in args and "--config.adv.eps_max=0.1" in args
        assert ("--config.adv.start=joint" in args) == method.pcl  # softmax methods attack from step 1
        assert all(f"--config.{k}={v}" in args for k, v in ttr.RECIPE.items())
