"""The scaled paper schedule: epochs, warm-up and lr boundaries are the paper's times the scale."""

import keras
import numpy as np
import pytest

from pcl_tf import schedule, training
from pcl_tf.configs import common


def fmnist_train(scale, **more):
    config = common.make("fashion_mnist", "cnn6", "gap,fc512,fc64", "mnist")
    config.train.schedule_scale = scale
    config.train.update(more)
    return config.train


@pytest.mark.parametrize("scale, epochs, warmup, decays", [
    (1.0, 350, 50, (200.0, 250.0)),          # the paper, unchanged
    (1 / 8, 44, 6, (25.0, 31.25)),           # 43.75 -> 44 epochs, 6.25 -> 6
    (1 / 32, 11, 2, (6.25, 7.8125)),         # 10.9375 -> 11, 1.5625 -> 2
])
def test_scaled_schedule_is_the_papers_times_the_scale(scale, epochs, warmup, decays):
    plan = schedule.Schedule.from_config(fmnist_train(scale))
    assert (plan.epochs, plan.warmup_epochs) == (epochs, warmup)
    assert plan.lr_decay_epochs == pytest.approx(decays)
    # Decays land on exact steps: at 235 steps an epoch (60,000 / 256), 25 -> 5875, 31.25 -> 7343.75 -> 7344.
    assert plan.decay_steps(235) == tuple(int(np.floor(d * 235 + 0.5)) for d in decays)


def test_cifar_schedule_scales_too():
    config = common.make("cifar10", "resnet110", "gap", "cifar")
    config.train.schedule_scale = 0.1
    plan = schedule.Schedule.from_config(config.train)
    assert (plan.epochs, plan.warmup_epochs, plan.lr_decay_epochs) == (50, 20, (20.0, 25.0))


def read_lr(optimizer, step):
    optimizer.iterations.assign(step)
    return float(keras.ops.convert_to_tensor(optimizer.learning_rate))


def test_optimizer_reads_the_scaled_learning_rate_at_the_boundaries():
    plan = schedule.Schedule.from_config(fmnist_train(1 / 8))
    optimizer = training.make_optimizer("sgd", plan.learning_rate(0.1, steps_per_epoch=10))
    # Decays at epochs 25 and 31.25 -> steps 250 and 313 (312.5 rounds up).
    rates = [read_lr(optimizer, s) for s in (0, 249, 250, 312, 313, 439)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_lr_warmup_ramps_linearly_then_hands_over_to_the_decays():
    plan = schedule.Schedule.from_config(fmnist_train(1 / 8, lr_warmup_epochs=1.0))
    optimizer = training.make_optimizer("sgd", plan.learning_rate(0.1, steps_per_epoch=4))
    rates = [read_lr(optimizer, s) for s in (0, 1, 3, 4, 99, 100)]
    assert rates == pytest.approx([0.025, 0.05, 0.1, 0.1, 0.1, 0.01])


def test_no_decay_and_no_warmup_is_a_constant():
    assert schedule.learning_rate_schedule(0.01) == 0.01


def test_describe_names_the_scale_and_the_warmup():
    text = schedule.Schedule.from_config(fmnist_train(1 / 8, lr_warmup_epochs=0.5)).describe()
    assert text == ("44 epochs (6 CE warm-up), lr decays at epochs 25, 31.25, linear lr warm-up over 0.5 epochs "
                    "(schedule_scale 0.125)")


def test_time_budget_one_cycle_follows_the_share_of_the_budget_trained_not_the_step():
    import tensorflow as tf

    plan = schedule.Schedule.from_config(fmnist_train(1.0, lr_schedule="one_cycle_time", epochs=10))
    seconds = tf.Variable(0.0, dtype=tf.float64)
    optimizer = training.make_optimizer("sgd", plan.learning_rate(0.2, steps_per_epoch=10, train_seconds=seconds,
                                                                  budget_seconds=100.0))
    rates = []
    for elapsed in (0.0, 20.0, 40.0, 70.0, 100.0, 130.0):  # the step stays 0 throughout
        seconds.assign(elapsed)
        rates.append(read_lr(optimizer, 0))
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.1, 0.0, 0.0], abs=1e-6)
    assert "over the time budget" in plan.describe()
    with pytest.raises(ValueError, match="time_budget_minutes > 0"):
        plan.learning_rate(0.2, steps_per_epoch=10)


def test_one_cycle_rises_to_the_peak_at_two_fifths_then_falls_to_zero():
    config = fmnist_train(1.0, lr_schedule="one_cycle", epochs=10)
    plan = schedule.Schedule.from_config(config)
    optimizer = training.make_optimizer("sgd", plan.learning_rate(0.2, steps_per_epoch=10))  # 100 steps
    rates = [read_lr(optimizer, s) for s in (0, 19, 39, 69, 99)]
    assert rates == pytest.approx([0.2 * 1 / 40, 0.1, 0.2, 0.1, 0.0], abs=1e-6)
    assert "one-cycle" in plan.describe()
