"""bench/common.py: what the benchmarks share."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "bench"))

import common  # noqa: E402  (bench/common.py)


def test_timed_batches_are_real_cached_and_untuned():
    """The batches a timed fit reads: the number asked for, full, and with tf.data's autotuning off
    (a timed fit sometimes waited for its thread's next wake-up, 10 ms x (2^n - 1) after the start)."""
    batches = common.timed_batches(steps=3, batch_size=8)
    assert batches.options().autotune.enabled is False
    first, second = [list(batches) for _ in range(2)]
    assert [tuple(x.shape) for x, _ in first] == [(8, 28, 28, 1)] * 3
    for (x1, y1), (x2, y2) in zip(first, second):  # every pass replays the same images
        assert (x1.numpy() == x2.numpy()).all() and (y1.numpy() == y2.numpy()).all()


def test_fit_seconds_times_one_real_training_pass():
    """fit_seconds trains once over the batches (the weights move) and returns the time it took."""
    import keras
    import numpy as np

    batches = common.timed_batches(steps=2, batch_size=8)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.copy() for w in model.get_weights()]
    seconds = common.fit_seconds(model, batches)
    assert seconds > 0
    assert any(not np.array_equal(b, a) for b, a in zip(before, model.get_weights()))
