"""In-graph FGSM/PGD used by adversarial training, and the augmented training step."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

from pcl_tf import adversarial, training
from synthetic import robust_and_non_robust


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 1))
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(x))
    f = keras.layers.Dense(8, activation="relu", name="f")(h)
    return keras.Model(x, {"logits": keras.layers.Dense(3)(f), "feat_f": f})


def ce_of(network):
    def loss(x, y):
        logits = network(x, training=False)["logits"]
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))

    return loss


def batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 6, 6, 1), dtype=np.float32), rng.integers(0, 3, n).astype(np.int32)


def test_pgd_agrees_with_cleverhans_on_the_same_random_start(small_model):
    x, y = batch()
    logits_fn = lambda v: small_model(v, training=False)["logits"]  # noqa: E731
    tf.random.set_seed(123)
    want = projected_gradient_descent(logits_fn, x, 0.2, 0.05, 5, np.inf, clip_min=0.0, clip_max=1.0,
                                      y=y, rand_init=True, sanity_checks=False)
    tf.random.set_seed(123)  # the same first random draw: the same uniform start
    got = adversarial.pgd(ce_of(small_model), x, y, eps=0.2, steps=5, step_size=0.05)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_perturbation_stays_in_the_ball_and_in_unit_range(small_model, method):
    x, y = batch()
    augment = adversarial.AdversarialAugmentation(method, eps_min=0.3, eps_max=0.3, steps=3)
    x_adv = augment.perturb(ce_of(small_model), x, y, 0.3).numpy()
    assert np.abs(x_adv - x).max() <= 0.3 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.abs(x_adv - x).max() > 0.1  # it did move


def test_zero_eps_returns_the_input(small_model):
    x, y = batch()
    for method in ("fgsm", "pgd"):
        augment = adversarial.AdversarialAugmentation(method, eps_min=0.0, eps_max=0.0, steps=2)
        np.testing.assert_array_equal(augment.perturb(ce_of(small_model), x, y, 0.0).numpy(), x)


def test_augmented_step_doubles_the_batch_by_hand(small_model):
    """One augmented batch checked by hand: clean half first, labels duplicated, the second
    half within the batch's ε of the first and in [0, 1], ε drawn from the configured range."""
    model = training.PCLModel(small_model, 3, adversary=adversarial.AdversarialAugmentation(
        "pgd", eps_min=0.1, eps_max=0.2, steps=2))
    model.compile(optimizer="sgd")
    x, y = batch(8)
    x_aug, y_aug = model.augment(x, y)
    x_aug, y_aug = x_aug.numpy(), y_aug.numpy()
    assert x_aug.shape == (16, 6, 6, 1)
    np.testing.assert_array_equal(x_aug[:8], x)
    np.testing.assert_array_equal(y_aug, np.concatenate([y, y]))
    linf = np.abs(x_aug[8:] - x).max()
    assert 0.0 < linf <= 0.2 + 1e-6
    assert x_aug.min() >= 0.0 and x_aug.max() <= 1.0
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])


def test_adversarial_only_training_batch():
    augment = adversarial.AdversarialAugmentation("fgsm", eps_min=0.1, eps_max=0.1, include_clean=False)
    x = tf.fill([4, 2, 2, 1], 0.5)
    x_adv, y = augment(lambda v, t: tf.reduce_sum(v), x, tf.zeros([4], tf.int32))
    np.testing.assert_allclose(x_adv.numpy(), 0.6)  # gradient of sum is +1 everywhere
    assert y.shape == (4,)


def test_eps_ramp_grows_linearly_to_the_full_eps():
    """FGSM on a constant-gradient loss moves every pixel by exactly the batch's ε, so the
    perturbation reads the ramp off: (step + 1) / ramp_steps of 0.2, then 0.2 from step 3 on."""
    augment = adversarial.AdversarialAugmentation("fgsm", eps_min=0.2, eps_max=0.2, include_clean=False,
                                                  ramp_steps=4)
    x = tf.fill([2, 2, 2, 1], 0.5)
    moved = [float(tf.reduce_max(augment(lambda v, t: tf.reduce_sum(v), x, tf.zeros([2], tf.int32), step=s)[0])) - 0.5
             for s in (0, 1, 3, 40)]
    np.testing.assert_allclose(moved, [0.05, 0.1, 0.2, 0.2], atol=1e-6)
    with pytest.raises(ValueError, match="needs the training step"):
        augment(lambda v, t: tf.reduce_sum(v), x, tf.zeros([2], tf.int32))


def test_training_step_feeds_the_optimizer_step_to_the_ramp(small_model):
    """The ramp follows the optimizer's iteration count, which a checkpoint restores: after
    two updates the third batch is perturbed by 3/10 of ε."""
    model = training.PCLModel(small_model, 3, adversary=adversarial.AdversarialAugmentation(
        "fgsm", eps_min=0.2, eps_max=0.2, include_clean=False, ramp_steps=10))
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x, y = batch(8)
    x = 0.25 + 0.5 * x  # away from the [0, 1] clip, so FGSM moves each pixel by ε exactly
    for _ in range(2):
        model.train_on_batch(x, y)
    assert int(model.optimizer.iterations) == 2
    x_adv, _ = model.augment(x, y)
    np.testing.assert_allclose(np.abs(x_adv.numpy() - x).max(), 0.06, atol=1e-6)


def test_attack_runs_in_inference_mode_and_leaves_batchnorm_statistics_alone():
    keras.utils.set_random_seed(1)
    x_in = keras.Input((4,))
    bn = keras.layers.BatchNormalization(name="bn")
    h = bn(x_in)
    network = keras.Model(x_in, {"logits": keras.layers.Dense(2)(h), "feat_h": h})
    model = training.PCLModel(network, 2, adversary=adversarial.AdversarialAugmentation(
        "pgd", eps_min=0.1, eps_max=0.1, steps=3))
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # lr 0: only BN statistics could move
    x = np.random.default_rng(0).random((8, 4), dtype=np.float32) + 3.0
    before = bn.moving_mean.numpy().copy()
    model.augment(x, np.zeros(8, np.int32))
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="bim", eps_min=0.1, eps_max=0.2), "unknown adversarial"),
    (dict(method="fgsm", eps_min=0.3, eps_max=0.2), "eps_min <= eps_max"),
    (dict(method="fgsm", eps_min=-0.1, eps_max=0.2), "0 <= eps_min"),
    (dict(method="pgd", eps_min=0.1, eps_max=0.2, steps=0), "steps > 0"),
    (dict(method="pgd", eps_min=0.1, eps_max=0.2, ramp_steps=-1), "ramp's length"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        adversarial.AdversarialAugmentation(**kwargs)


def test_fgsm_adversarial_training_raises_robust_accuracy_on_a_tiny_problem():
    from pcl_tf.attacks import cleverhans_compat

    x_train, y_train = robust_and_non_robust(2000, 0)
    x_test, y_test = robust_and_non_robust(500, 1)
    robust = {}
    for name, adversary in [("plain", None), ("fgsm", adversarial.AdversarialAugmentation("fgsm", 0.1, 0.1))]:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 1))
        f = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
        network = keras.Model(inputs, {"logits": keras.layers.Dense(2)(f), "feat_f": f})
        model = training.PCLModel(network, 2, adversary=adversary)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        model.fit(x_train, y_train, batch_size=100, epochs=5, verbose=0)
        twin = model.inference_model()
        assert (np.argmax(twin(x_test), 1) == y_test).mean() > 0.95  # both learn the task
        x_adv = cleverhans_compat.fgsm(twin, x_test, y_test, eps=0.1)
        robust[name] = (np.argmax(twin(x_adv), 1) == y_test).mean()
    # Measured: plain 0.55, FGSM-trained 0.97.
    assert robust["fgsm"] > robust["plain"] + 0.25, robust


def test_joint_start_augments_only_once_the_joint_loss_is_on(small_model):
    """Algorithm 1 makes adversarial copies in its joint-loss phase: during the CE warm-up
    (pc_active = 0) the batch is the clean one; after it, clean + adversarial."""
    model = training.PCLModel(small_model, 3, adversary_start="joint", adversary=adversarial.AdversarialAugmentation(
        "fgsm", eps_min=0.1, eps_max=0.1))
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x, y = batch(8)
    x_warm, y_warm = model.augment(x, y)
    np.testing.assert_array_equal(x_warm.numpy(), x)
    np.testing.assert_array_equal(y_warm.numpy(), y)
    model.pc_active.assign(1.0)
    x_joint, _ = model.augment(x, y)
    assert x_joint.shape[0] == 16 and np.abs(x_joint.numpy()[8:] - x).max() > 0.05


def test_joint_start_follows_the_warmup_inside_fit(small_model):
    """Through fit and PCLSchedule (warm-up of 1 epoch of 2): the adversary is called in the
    compiled step only in epoch 2, once per batch; with first_step from the first batch."""
    calls = tf.Variable(0, dtype=tf.int64)

    class CountingAugmentation(adversarial.AdversarialAugmentation):
        def __call__(self, loss_fn, x, y, step=None):
            calls.assign_add(1)
            return super().__call__(loss_fn, x, y, step)

    x, y = batch(16)
    seen = {}
    for start in ("joint", "first_step"):
        calls.assign(0)
        model = training.PCLModel(small_model, 3, adversary_start=start,
                                  adversary=CountingAugmentation("fgsm", eps_min=0.1, eps_max=0.1))
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        per_epoch = []
        record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: per_epoch.append(int(calls.numpy())))
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[training.PCLSchedule(1), record])
        seen[start] = per_epoch
    assert seen == {"joint": [0, 2], "first_step": [2, 4]}


def sum_loss(v, t):
    return tf.reduce_sum(v)  # input gradient +1 everywhere: every step moves each pixel up


def test_fast_at_is_one_step_of_1_25_eps_from_the_uniform_start_projected():
    """Wong et al.'s FGSM-RS by hand: start x + U(-ε, ε) (the same stateless draw), one step of
    1.25 ε up, back into the ε-ball and [0, 1]."""
    x = tf.fill([2, 3, 3, 1], 0.5)
    eps, seed = 0.1, tf.constant([3, 4])
    start = x + tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps)
    want = np.clip(np.minimum(start.numpy() + 1.25 * eps, 0.5 + eps), 0, 1)  # projected onto the ball's top
    got = adversarial.pgd(sum_loss, x, None, eps, steps=1, step_size=1.25 * eps, seed=seed).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert (got == np.float32(0.6)).any() and (got < 0.6 - 1e-3).any()  # some clipped to the ball, some not


def test_nfgsm_leaves_the_eps_ball_but_not_the_unit_range():
    """N-FGSM: noise U(-2ε, 2ε) then a step of ε, not projected: |δ| reaches up to 3ε."""
    x = tf.fill([4, 8, 8, 1], 0.5)
    eps, seed = 0.1, tf.constant([1, 2])
    noise = tf.random.stateless_uniform(tf.shape(x), seed, -2 * eps, 2 * eps)
    got = adversarial.pgd(sum_loss, x, None, eps, steps=1, step_size=eps, seed=seed, start_radius=2 * eps,
                          project=False).numpy()
    np.testing.assert_allclose(got, np.clip(0.5 + noise.numpy() + eps, 0, 1), atol=1e-6)
    delta = np.abs(got - 0.5)
    assert delta.max() > 1.5 * eps and delta.max() <= 3 * eps + 1e-6
    assert got.min() >= 0.0 and got.max() <= 1.0


@pytest.mark.parametrize("variants, steps, ratio, radius, project", [
    ("fastat", 1, 1.25, 1.0, True),
    ("nfgsm", 1, 1.0, 2.0, False),
    ("advpgd", 10, 0.25, 1.0, True),
])
def test_single_step_variants_are_pgd_configurations(variants, steps, ratio, radius, project):
    from pcl_tf import training_setup
    from pcl_tf.configs import fmnist_cnn6

    augment = training_setup.make_adversary(fmnist_cnn6.get_config(variants))
    assert (augment.method, augment.steps, augment.step_size_ratio, augment.start_radius_ratio, augment.project) == (
        "pgd", steps, ratio, radius, project)


def softmax_np(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_trades_objective_is_clean_ce_plus_beta_kl_by_hand(small_model):
    """compute_losses on [clean; adversarial]: CE of the clean half + β KL(p(clean) || p(adv)),
    worked out in NumPy from the logits."""
    model = training.PCLModel(small_model, 3, attack_loss="trades", trades_beta=6.0,
                              adversary=adversarial.AdversarialAugmentation("pgd", 0.1, 0.1, steps=2))
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x, y = batch(8)
    x_adv = 1.0 - x  # far from x, so that the KL is well above float32 noise
    terms = model.compute_losses(np.concatenate([x, x_adv]), np.concatenate([y, y]), training=False, trades_pairs=True)
    p = softmax_np(small_model(x, training=False)["logits"].numpy().astype(np.float64))
    q = softmax_np(small_model(x_adv, training=False)["logits"].numpy().astype(np.float64))
    ce = -np.log(p[np.arange(8), y]).mean()
    kl = (p * (np.log(p) - np.log(q))).sum(1).mean()
    assert float(terms["ce"]) == pytest.approx(ce, rel=1e-5)
    assert kl > 1e-3 and float(terms["kl"]) == pytest.approx(kl, rel=1e-4, abs=1e-6)
    assert float(terms["loss"]) == pytest.approx(ce + 6.0 * kl, rel=1e-5)  # pc_active = 0: no PC term
    assert terms["labels"].shape == (8,)


def test_trades_attack_raises_the_kl_within_eps_and_warmup_pairs_are_clean(small_model):
    model = training.PCLModel(small_model, 3, attack_loss="trades", adversary_start="joint",
                              adversary=adversarial.AdversarialAugmentation("pgd", 0.2, 0.2, steps=5,
                                                                            start_radius_ratio=0.01))
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x, y = batch(16)
    x_pair, y_pair = model.augment(x, y)  # warm-up: (x, x), KL 0, the step is plain CE
    np.testing.assert_array_equal(x_pair.numpy(), np.concatenate([x, x]))
    warm = model.compute_losses(x_pair, y_pair, training=False, trades_pairs=True)
    assert float(warm["kl"]) == pytest.approx(0.0, abs=1e-7)
    model.pc_active.assign(1.0)
    x_pair, _ = model.augment(x, y)
    x_adv = x_pair.numpy()[16:]
    assert np.abs(x_adv - x).max() <= 0.2 + 1e-6
    joint = model.compute_losses(x_pair, y_pair, training=False, trades_pairs=True)
    assert float(joint["kl"]) > 1e-4  # the attack found a prediction change
    logs = model.train_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "ce", "kl", "pcl_f", "accuracy"} and np.isfinite(logs["kl"])


def test_trades_needs_the_clean_images():
    with pytest.raises(ValueError, match="include_clean=True"):
        training.PCLModel(_linear(), 3, attack_loss="trades",
                          adversary=adversarial.AdversarialAugmentation("pgd", 0.1, 0.1, include_clean=False))


def _linear():
    x = keras.Input((2,))
    return keras.Model(x, {"logits": keras.layers.Dense(3)(x)})
