"""PCLModel.train_step: one step worked out by hand in NumPy; warm-up; schedules; checkpoints."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pcl_tf import schedule as lr_schedule
from pcl_tf import custom_loop, training

CLASSES = 3


def tiny_network(seed=0):
    """x (2) -> features f = x W (3, the PCL tap) -> logits z = f V (3); no biases, so the
    gradients below are short enough to write by hand."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((2,))
    f = keras.layers.Dense(3, use_bias=False, name="f")(x)
    z = keras.layers.Dense(CLASSES, use_bias=False, name="z")(f)
    return keras.Model(x, {"logits": z, "feat_f": f})


def hand_step(x, y, W, V, C, lr, centroid_lr):
    """Weights after one SGD step on CE + Eq. 5 (push margin off), derived by hand."""
    B, k = len(x), CLASSES
    f = x @ W
    z = f @ V
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(k)[y]) / B
    dV = f.T @ dz
    df = dz @ V.T
    dC = np.zeros_like(C)
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    for i in range(B):
        yi = y[i]
        df[i] += unit(f[i] - C[yi]) / B  # pull
        dC[yi] -= unit(f[i] - C[yi]) / B
        for j in range(k):
            if j == yi:
                continue
            df[i] -= unit(f[i] - C[j]) / (k - 1) / B  # push from the other centroids
            dC[j] += unit(f[i] - C[j]) / (k - 1) / B
            dC[yi] -= unit(C[yi] - C[j]) / (k - 1) / B  # centroids apart
            dC[j] += unit(C[yi] - C[j]) / (k - 1) / B
    dW = x.T @ df
    return W - lr * dW, V - lr * dV, C - centroid_lr * dC


def compiled(network, lr=0.1, centroid_lr=0.5, **kwargs):
    model = training.PCLModel(network, CLASSES, push_margin=None, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(lr), centroid_optimizer=keras.optimizers.SGD(centroid_lr))
    return model


def test_one_training_step_matches_hand_computation():
    model = compiled(tiny_network())
    model.pc_active.assign(1.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2)).astype(np.float32)
    y = rng.integers(0, CLASSES, 8).astype(np.int32)
    W = model.network.get_layer("f").kernel.numpy().astype(np.float64)
    V = model.network.get_layer("z").kernel.numpy().astype(np.float64)
    C = model.pc_layers[0].centroids.numpy().astype(np.float64)
    want_W, want_V, want_C = hand_step(x.astype(np.float64), y, W, V, C, 0.1, 0.5)

    model.train_on_batch(x, y)

    np.testing.assert_allclose(model.network.get_layer("f").kernel.numpy(), want_W, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.network.get_layer("z").kernel.numpy(), want_V, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.pc_layers[0].centroids.numpy(), want_C, rtol=1e-4, atol=1e-6)


def test_warmup_step_is_plain_cross_entropy_and_leaves_centroids_alone():
    model = compiled(tiny_network())
    assert float(model.pc_active) == 0.0  # Algorithm 1 starts with CE alone
    centroids = model.pc_layers[0].centroids.numpy()
    x = np.random.default_rng(1).normal(size=(8, 2)).astype(np.float32)
    y = np.arange(8) % CLASSES
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["ce"], rel=1e-6)
    np.testing.assert_array_equal(model.pc_layers[0].centroids.numpy(), centroids)


def test_pcl_schedule_switches_the_pc_terms_on_after_warmup():
    model = compiled(tiny_network())
    x = np.random.default_rng(2).normal(size=(16, 2)).astype(np.float32)
    y = np.arange(16) % CLASSES
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(float(model.pc_active)))
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[training.PCLSchedule(1), record])
    assert seen == [0.0, 1.0, 1.0]
    assert history.history["loss"][0] == pytest.approx(history.history["ce"][0], rel=1e-6)
    assert history.history["loss"][2] != pytest.approx(history.history["ce"][2], rel=1e-3)
    assert set(history.history) >= {"loss", "ce", "pcl_f", "accuracy"}


def test_learning_rate_decay_really_applies():
    schedule = lr_schedule.learning_rate_schedule(0.1, decay_steps=(2, 4), decay_factor=0.1)
    optimizer = keras.optimizers.SGD(schedule)
    model = training.PCLModel(tiny_network(), CLASSES)
    model.compile(optimizer=optimizer)
    x = np.zeros((4, 2), np.float32)
    y = np.zeros(4, np.int32)
    rates = []
    for _ in range(3):
        rates.append(float(keras.ops.convert_to_tensor(optimizer.learning_rate)))
        model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert rates == pytest.approx([0.1, 0.01, 0.001])


def test_softmax_model_has_no_pc_layers_and_trains():
    keras.utils.set_random_seed(0)
    x = keras.Input((2,))
    network = keras.Model(x, {"logits": keras.layers.Dense(CLASSES)(x)})
    model = training.PCLModel(network, CLASSES)
    model.compile(optimizer="sgd")
    assert model.pc_layers == [] and model.centroid_optimizer is None
    logs = model.train_on_batch(np.ones((4, 2), np.float32), np.zeros(4, np.int32), return_dict=True)
    assert set(logs) == {"loss", "ce", "accuracy"}


def test_checkpoint_restores_network_centroids_and_optimizers(tmp_path):
    model = compiled(tiny_network(seed=0))
    model.pc_active.assign(1.0)
    x = np.random.default_rng(3).normal(size=(8, 2)).astype(np.float32)
    y = np.arange(8) % CLASSES
    model.train_on_batch(x, y)
    path = tf.train.Checkpoint(**model.checkpoint_items()).save(str(tmp_path / "ckpt"))

    other = compiled(tiny_network(seed=1))
    tf.train.Checkpoint(**other.checkpoint_items()).restore(path).assert_consumed()
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(other.optimizer.iterations) == 1 and int(other.centroid_optimizer.iterations) == 1
    assert float(other.pc_active) == 1.0


def test_inference_model_shares_weights_and_returns_logits():
    model = compiled(tiny_network())
    twin = model.inference_model()
    x = np.ones((2, 2), np.float32)
    np.testing.assert_allclose(twin(x).numpy(), model(x).numpy())
    model.network.get_layer("z").kernel.assign(model.network.get_layer("z").kernel * 2)
    np.testing.assert_allclose(twin(x).numpy(), model(x).numpy())


def test_centroids_start_at_the_class_means_when_pcl_switches_on():
    model = compiled(tiny_network())
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 2)).astype(np.float32)
    y = np.array([0, 1] * 6, np.int32)  # class 2 absent: its centroid must stay where it was
    untouched = model.pc_layers[0].centroids.numpy()[2].copy()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    schedule = training.PCLSchedule(warmup_epochs=1, init_dataset=dataset, init_batches=2)
    schedule.set_model(model)
    features = x @ model.network.get_layer("f").kernel.numpy()
    schedule.on_epoch_begin(0)  # still warming up: nothing moves
    assert not np.allclose(model.pc_layers[0].centroids.numpy()[0], features[:8][y[:8] == 0].mean(0))
    schedule.on_epoch_begin(1)
    centroids = model.pc_layers[0].centroids.numpy()
    np.testing.assert_allclose(centroids[0], features[:8][y[:8] == 0].mean(0), rtol=1e-5)  # 2 batches of 4
    np.testing.assert_allclose(centroids[1], features[:8][y[:8] == 1].mean(0), rtol=1e-5)
    np.testing.assert_array_equal(centroids[2], untouched)
    assert float(model.pc_active) == 1.0


def test_non_finite_loss_stops_training_naming_step_and_term(tmp_path):
    model = compiled(tiny_network())
    model.pc_active.assign(1.0)
    x = np.random.default_rng(5).normal(size=(16, 2)).astype(np.float32)
    x[10] = np.nan  # batch 3 of 4 (batch size 4) turns every term NaN
    y = np.arange(16) % CLASSES
    saved = []
    checkpoint = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: saved.append(e))
    with pytest.raises(training.TrainingDivergedError, match=r"step 3 \(epoch 1\): loss term 'ce' is nan"):
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                  callbacks=[training.NonFiniteGuard(steps_per_epoch=4), checkpoint])
    assert saved == []  # the diverged epoch never reached its checkpoint


@pytest.mark.parametrize("loop", ["keras_fit", "custom_loop"])
@pytest.mark.parametrize("budget_steps, epochs_finished", [(5, 1), (8, 2)], ids=["mid_epoch", "epoch_end"])
def test_time_budget_never_reports_a_partial_epoch_and_finishes_one_it_ends(loop, budget_steps, epochs_finished):
    """StopAtTimeBudget (clock = one second per step, a test double for wall time) raises at the step
    the budget runs out. Mid-epoch, that epoch's end callbacks never run; on an epoch's last step
    they all run first. Under Keras' fit and pcl_tf's distributed loop (which must pass the steps
    per epoch to the callbacks as Keras does)."""
    model = compiled(tiny_network())
    x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((x, np.arange(16) % CLASSES)).batch(4).repeat()  # 4 steps an epoch
    ended = []
    budget = training.StopAtTimeBudget(budget_steps, lambda: float(model.optimizer.iterations.numpy()))
    callbacks = [keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: ended.append(e + 1)), budget]
    with pytest.raises(training.TimeBudgetReached, match="time budget"):
        if loop == "keras_fit":
            model.fit(data, epochs=10, steps_per_epoch=4, callbacks=callbacks, verbose=0, shuffle=False)
        else:
            custom_loop.fit(model, tf.distribute.get_strategy(), data, epochs=10, initial_epoch=0, steps_per_epoch=4,
                            callbacks=callbacks)
    assert int(model.optimizer.iterations.numpy()) == budget_steps
    assert ended == list(range(1, epochs_finished + 1))


def test_clip_global_norm_rescales_the_step_and_zero_leaves_it_alone():
    """A gradient of global norm 5 (3, 4 on two variables) moves the weights by 0.5 in norm
    with clip_global_norm=0.5 (direction kept), and by 5 without clipping (SGD lr 1, no momentum)."""
    for clip, moved in ((0.5, 0.5), (0.0, 5.0)):
        a, b = tf.Variable([0.0]), tf.Variable([0.0])
        optimizer = training.make_optimizer("sgd", 1.0, momentum=0.0, clip_global_norm=clip)
        optimizer.apply([tf.constant([3.0]), tf.constant([4.0])], [a, b])
        np.testing.assert_allclose([-a.numpy()[0], -b.numpy()[0]], [0.6 * moved, 0.8 * moved], rtol=1e-6)
