"""APGD-CE, APGD-T, Square and PGD with restarts: tested by their properties on a tiny undefended
model (ball and box kept, ε = 0 is the identity, seeds reproduce, every success is reported,
restarts only add successes, bad arguments raise), plus the DLR-T loss and the registry."""

import keras
import numpy as np
import pytest

from pcl_tf import attacks, compiled
from pcl_tf.attacks import apgd, core, square
from pcl_tf.attacks import cleverhans_compat as ch
from synthetic import stripes

CLASSES = 10  # stripes uses 3 of them; 10 logits as for Fashion-MNIST (DLR-T needs >= 4)


def tiny_model(epochs=4):
    """A small CNN with 10 logits trained on 3-class stripes in about a second (~100 % clean)."""
    keras.utils.set_random_seed(0)
    x = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h))
    h = keras.layers.Dense(16, activation="relu")(h)
    net = keras.Model(x, keras.layers.Dense(CLASSES)(h))
    net.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=False)
    net.fit(*stripes(1200, seed=0), batch_size=64, epochs=epochs, verbose=0)
    return net


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def data():
    return stripes(128, seed=7)


def accuracy(model, x_adv, y):
    return float(np.mean(np.argmax(model(x_adv).numpy(), axis=1) == y))


def assert_in_ball(x_adv, x, eps, norm):
    x_adv = np.asarray(x_adv)
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-5) + 1e-6


def test_model_learns(model, data):
    assert accuracy(model, *data) > 0.95


def test_checkpoints_follow_the_paper():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (next 1.05 > 1)
    assert apgd.checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd.checkpoints(10) == [3, 5, 6, 7, 8, 9, 10]


def test_dlr_targeted_loss_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 10)).astype(np.float32)
    y = rng.integers(0, 10, 6).astype(np.int32)
    t = (y + 1 + rng.integers(0, 9, 6)).astype(np.int32) % 10
    s = -np.sort(-z, axis=1)
    rows = np.arange(6)
    np.testing.assert_allclose(core.dlr_targeted(z, y, t),
                               -(z[rows, y] - z[rows, t]) / (s[:, 0] - (s[:, 2] + s[:, 3]) / 2 + 1e-12), rtol=1e-5)


@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 3.0)])
@pytest.mark.parametrize("attack", [apgd.apgd_ce, apgd.apgd_t])
def test_apgd_fools_undefended_model_within_the_ball(model, data, attack, norm, eps):
    x, y = data
    x_adv = attack(model, x, y, eps, norm=norm, seed=0)
    assert_in_ball(x_adv, x, eps, norm)
    assert accuracy(model, x_adv, y) < 0.05


@pytest.mark.parametrize("attack", [
    lambda m, x, y, eps, seed: apgd.apgd_ce(m, x, y, eps, steps=20, seed=seed),
    lambda m, x, y, eps, seed: apgd.apgd_ce(m, x, y, eps, steps=20, norm="l2", seed=seed),
    lambda m, x, y, eps, seed: apgd.apgd_t(m, x, y, eps, steps=20, n_target_classes=3, seed=seed),
    lambda m, x, y, eps, seed: square.square(m, x, y, eps, queries=50, seed=seed),
    lambda m, x, y, eps, seed: apgd.pgd_restarts(m, x, y, eps, restarts=2, seed=seed),
], ids=["apgd-ce", "apgd-ce-l2", "apgd-t", "square", "pgd-restarts"])
def test_eps_zero_is_identity_and_seed_reproduces(model, data, attack):
    x, y = data
    np.testing.assert_array_equal(attack(model, x, y, 0.0, 0), x)
    first, again = attack(model, x, y, 0.05, 1), attack(model, x, y, 0.05, 1)
    np.testing.assert_array_equal(first, again)


def test_apgd_returns_a_misclassified_point_wherever_any_iterate_was(model, data):
    x, y = data
    eps = 0.05  # some points fall, some hold
    x_adv, fooled = apgd._apgd(model, x, y, eps, 100, 1, "linf", 0, 0.75, "ce")
    wrong = np.argmax(model(x_adv).numpy(), axis=1) != y
    assert 0 < fooled.sum() < len(y)
    np.testing.assert_array_equal(wrong, fooled)
    # At least as strong as CleverHans PGD-10 with the paper's step on the same images.
    pgd_acc = accuracy(model, ch.pgd(model, x, y, eps, steps=10, step_size=eps / 10, seed=0), y)
    assert accuracy(model, x_adv, y) <= pgd_acc


def test_restarts_only_add_successes(model, data):
    x, y = data
    eps = 0.04
    one = apgd._apgd(model, x, y, eps, 30, 1, "linf", 3, 0.75, "ce")[1]
    three = apgd._apgd(model, x, y, eps, 30, 3, "linf", 3, 0.75, "ce")[1]
    assert np.all(three[one]) and three.sum() >= one.sum()
    # PGD with restarts: the same for the first restart, and no weaker than one PGD run.
    single = apgd.pgd_restarts(model, x, y, eps, restarts=1, seed=3)
    several = apgd.pgd_restarts(model, x, y, eps, restarts=5, seed=3)
    assert_in_ball(several, x, eps, "linf")
    single_ok = np.argmax(model(single).numpy(), axis=1) == y
    several_ok = np.argmax(model(several).numpy(), axis=1) == y
    assert np.all(~several_ok[~single_ok])
    pgd_acc = accuracy(model, ch.pgd(model, x, y, eps, steps=10, step_size=eps / 4, seed=3), y)
    assert several_ok.mean() <= pgd_acc + 0.02


def test_compiled_once_for_every_batch_size(model, data):
    x, y = data
    apgd.apgd_ce(model, x[:16], y[:16], 0.1, steps=7, seed=0)
    apgd.apgd_ce(model, x[:40], y[:40], 0.1, steps=7, seed=0)
    run = compiled.lookup(model, ("apgd", "linf", "ce", 7, (28, 28, 1)))
    assert run.experimental_get_tracing_count() == 1


def test_square_fools_with_few_queries_and_stays_in_the_ball(model, data):
    x, y = data
    x_adv = square.square(model, x, y, 0.3, queries=300, seed=0)
    assert_in_ball(x_adv, x, 0.3, "linf")
    assert accuracy(model, x_adv, y) < 0.2
    assert square.p_schedule(0.8, 5, 5000) == 0.8
    assert square.p_schedule(0.8, 30, 100) == pytest.approx(0.8 / 64)  # iteration 3000 of 10 000: 6 halvings


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: apgd.apgd_ce(m, x, y, -0.1), "eps"),
    (lambda m, x, y: apgd.apgd_ce(m, x, y, 1.5), "eps"),
    (lambda m, x, y: apgd.apgd_ce(m, x, y, -1.0, norm="l2"), "eps"),
    (lambda m, x, y: apgd.apgd_ce(m, x, y, 0.1, norm="l1"), "norm"),
    (lambda m, x, y: apgd.apgd_ce(m, x, y, 0.1, steps=0), "steps"),
    (lambda m, x, y: apgd.apgd_ce(m, x, y, 0.1, restarts=0), "restarts"),
    (lambda m, x, y: apgd.apgd_ce(m, x, y, 0.1, rho=0.0), "rho"),
    (lambda m, x, y: apgd.apgd_ce(m, x, y, 0.1, seed=1.5), "seed"),
    (lambda m, x, y: apgd.apgd_ce(m, x * 2, y, 0.1), "x must lie"),
    (lambda m, x, y: apgd.apgd_ce(m, x.astype(np.float64), y, 0.1), "float32"),
    (lambda m, x, y: apgd.apgd_ce(m, x, y + CLASSES, 0.1), "labels"),
    (lambda m, x, y: apgd.apgd_t(m, x, y, 0.1, n_target_classes=0), "n_target_classes"),
    (lambda m, x, y: square.square(m, x, y, 0.1, queries=0), "queries"),
    (lambda m, x, y: square.square(m, x, y, 0.1, p_init=0.0), "p_init"),
    (lambda m, x, y: apgd.pgd_restarts(m, x, y, 0.1, step_size=-1.0), "step_size"),
])
def test_bad_arguments_raise(model, data, call, message):
    x, y = data
    with pytest.raises(ValueError, match=message):
        call(model, x[:4], y[:4])


def test_registry_defaults(model, data):
    assert attacks.STRONG_METHODS == ("apgd-ce", "apgd-t", "square", "pgd-restarts")
    assert attacks.METHODS[-4:] == attacks.STRONG_METHODS
    assert attacks.default_params("apgd-ce", "fashion_mnist") == {"eps": 0.3, "steps": 100, "restarts": 1}
    assert attacks.default_params("apgd-t", "cifar10") == {"eps": 0.03, "steps": 100, "n_target_classes": 9,
                                                          "restarts": 1}
    assert attacks.default_params("square", "mnist")["queries"] == 5000
    assert attacks.default_params("pgd-restarts", "mnist") == {"eps": 0.3, "steps": 10,
                                                               "step_size": pytest.approx(0.075), "restarts": 5}
    x, y = data
    for method in attacks.STRONG_METHODS:
        assert attacks.NORMS[method] == "linf"
        attack = attacks.make_attack(method, attacks.default_params(method, "mnist", steps=5), seed=0)
        assert not attack.needs_prototypes
        assert_in_ball(attack.fn(model, x[:8], y[:8]), x[:8], 0.3, "linf")
