"""The in-graph attack core (pcl_tf.attacks.core): the PGD adversarial training always ran, the
shared objective, the losses, and the one nearest-prototype rule."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pcl_tf import adversarial, losses, training
from pcl_tf.attacks import adaptive, core


def _reference_pgd(loss_fn, x, y, eps, steps, step_size, random_start=True, seed=None, start_radius=None,
                   project=True):
    """pcl_tf.adversarial.pgd as it was before the attack core (commit 5a07d62), verbatim."""

    def signed_gradient(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            loss = loss_fn(v, y)
        return tf.sign(tf.stop_gradient(tape.gradient(loss, v)))

    x = tf.convert_to_tensor(x)
    eps = tf.cast(eps, x.dtype)
    step_size = tf.cast(step_size, x.dtype)
    radius = eps if start_radius is None else tf.cast(start_radius, x.dtype)
    if random_start and seed is not None:
        x_adv = x + tf.random.stateless_uniform(tf.shape(x), seed, -radius, radius, dtype=x.dtype)
    elif random_start:
        x_adv = x + tf.random.uniform(tf.shape(x), -radius, radius, dtype=x.dtype)
    else:
        x_adv = x
    x_adv = tf.clip_by_value(x_adv, 0.0, 1.0)
    for _ in range(int(steps)):
        x_adv = x_adv + step_size * signed_gradient(x_adv)
        if project:
            x_adv = x + tf.clip_by_value(x_adv - x, -eps, eps)
        x_adv = tf.clip_by_value(x_adv, 0.0, 1.0)
    return tf.stop_gradient(x_adv)


@pytest.fixture(scope="module")
def network():
    """Logits, one supervised feature and a branch CE head (Eq. 8)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((6, 6, 1))
    h = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu")(x))
    f = keras.layers.Dense(8, activation="relu")(h)
    return keras.Model(x, {"logits": keras.layers.Dense(3)(f), "feat_f": f, "aux_logits_f": keras.layers.Dense(3)(f)})


def batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 6, 6, 1), dtype=np.float32), rng.integers(0, 3, n).astype(np.int32)


def ce_of(network):
    return lambda v, t: core.mean_cross_entropy(network(v, training=False)["logits"], t)


@pytest.mark.parametrize("settings", [
    dict(steps=5, step_size=0.05),  # the training PGD (Madry)
    dict(steps=1, step_size=0.25),  # fast AT
    dict(steps=1, step_size=0.2, start_radius=0.4, project=False),  # N-FGSM
    dict(steps=3, step_size=0.05, random_start=False),  # BIM-like
])
def test_core_pgd_equals_the_former_adversarial_training_pgd(network, settings):
    x, y = batch()
    seed = tf.constant([7, 3])
    want = _reference_pgd(ce_of(network), x, y, 0.2, seed=seed, **settings)
    got = core.pgd(ce_of(network), x, y, 0.2, seed=seed, **settings)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    # Unseeded: the same draw from TF's global random state.
    tf.random.set_seed(11)
    want = _reference_pgd(ce_of(network), x, y, 0.2, **settings)
    tf.random.set_seed(11)
    got = adversarial.pgd(ce_of(network), x, y, 0.2, **settings)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_adaptive_attack_maximises_the_training_objective_with_branch_heads(network):
    """The adaptive attack's objective is the training loss with the PC terms on, branch CE heads
    included (before the core, it dropped them)."""
    model = training.PCLModel(network, 3, branch_ce_weight=0.5)
    model.pc_active.assign(1.0)
    x, y = batch()
    want = model.compute_losses(x, y, training=False)["loss"]
    got = adaptive._joint_objective(model, tf.constant(x), tf.constant(y), None)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)
    head = core.mean_cross_entropy(network(x)["aux_logits_f"], y)
    assert head.numpy() > 0.1  # the branch head is a real part of it
    pc = model.pc_layers[0](network(x)["feat_f"], y)
    np.testing.assert_allclose(got.numpy(), (core.mean_cross_entropy(network(x)["logits"], y) + 0.5 * head + pc).numpy(),
                               rtol=1e-6)


def test_margin_is_true_minus_best_other_logit():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(8, 5)).astype(np.float32)
    y = rng.integers(0, 5, 8).astype(np.int32)
    other = np.where(np.eye(5, dtype=bool)[y], -np.inf, z).max(axis=1)
    np.testing.assert_allclose(core.margin(z, y).numpy(), z[np.arange(8), y] - other, rtol=1e-6)


def test_nearest_prototype_with_an_excluded_class():
    prototypes = np.float32([[0, 0], [10, 0], [0, 10]])
    features = np.float32([[1, 1], [9, 1], [1, 8]])
    np.testing.assert_array_equal(losses.nearest_prototype(features, prototypes).numpy(), [0, 1, 2])
    np.testing.assert_array_equal(losses.nearest_prototype(features, prototypes, excluded=[0, 1, 2]).numpy(), [1, 0, 0])
    assert losses.nearest_prototype(features, prototypes, output_type=tf.int64).dtype == tf.int64


def test_project_keeps_the_ball_and_the_image_range():
    x = tf.fill([2, 4, 4, 1], 0.95)
    far = x + tf.constant(0.5) * tf.sign(tf.random.stateless_normal([2, 4, 4, 1], [1, 2]))
    linf = core.project(x, far, 0.1).numpy()
    assert linf.max() <= 1.0 and np.abs(linf - 0.95).max() <= 0.1 + 1e-6
    l2 = core.project(x, far, 0.3, norm="l2")
    assert (core.l2_norm(l2 - x).numpy() <= 0.3 + 1e-5).all() and l2.numpy().max() <= 1.0
