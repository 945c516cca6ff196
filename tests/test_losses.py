"""PrototypeConformityLoss against NumPy references of Eq. 5 and of the official code's variant."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pcl_tf.losses import PrototypeConformityLoss


def reference_paper(f, y, w, pull_weight=1.0, push_weight=1.0, margin=None):
    """Eq. 5, batch mean, written as the paper's loops (float64)."""
    k = w.shape[0]
    cap = (lambda d: d) if margin is None else (lambda d: min(d, margin))
    total = 0.0
    for fi, yi in zip(f, y):
        pull = np.linalg.norm(fi - w[yi])
        push = sum(cap(np.linalg.norm(fi - w[j])) + cap(np.linalg.norm(w[yi] - w[j])) for j in range(k) if j != yi)
        total += pull_weight * pull - push_weight * push / (k - 1)
    return total / len(f)


def reference_official(f, y, c_pull, c_push, pull_weight=1.0, push_weight=1e-4):
    """proximity.py + contrastive_proximity.py: squared distances, separate centre sets."""
    k = c_pull.shape[0]
    pull = np.mean([np.sum((fi - c_pull[yi]) ** 2) for fi, yi in zip(f, y)])
    push = np.sum([np.sum((fi - c_push[j]) ** 2) for fi, yi in zip(f, y) for j in range(k) if j != yi])
    push /= len(f) * (k - 1)
    return pull_weight * pull - push_weight * push


def make_case(seed=0, batch=6, classes=4, dim=5):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(batch, dim)).astype(np.float32)
    y = rng.integers(0, classes, size=batch).astype(np.int32)
    return f, y


def built(layer, f):
    layer.build(f.shape)
    return layer


@pytest.mark.parametrize("margin", [None, 2.5])
@pytest.mark.parametrize("graph", [False, True])
def test_paper_mode_matches_reference(margin, graph):
    f, y = make_case()
    layer = built(PrototypeConformityLoss(4, pull_weight=0.7, push_weight=0.3, push_margin=margin), f)
    fn = tf.function(layer.__call__) if graph else layer
    got = float(fn(f, y))
    want = reference_paper(f, y, layer.centroids.numpy().astype(np.float64), 0.7, 0.3, margin)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("graph", [False, True])
def test_official_mode_matches_reference(graph):
    f, y = make_case(seed=1)
    layer = built(PrototypeConformityLoss(4, mode="official"), f)
    fn = tf.function(layer.__call__) if graph else layer
    got = float(fn(f, y))
    want = reference_official(f, y, layer.pull_centroids.numpy(), layer.push_centroids.numpy())
    assert got == pytest.approx(want, rel=1e-5)
    assert len(layer.trainable_weights) == 2  # separate pull and push centres


def _finite_difference(fn, array, eps=1e-5):
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        plus, minus = array.copy(), array.copy()
        plus[index] += eps
        minus[index] -= eps
        grad[index] = (fn(plus) - fn(minus)) / (2 * eps)
    return grad


@pytest.mark.parametrize("mode", ["paper", "official"])
def test_gradients_match_finite_differences(mode):
    f, y = make_case(seed=2, batch=4, classes=3, dim=4)
    layer = built(PrototypeConformityLoss(3, mode=mode, push_weight=0.5, push_margin=None), f)
    centroids = [w.numpy().astype(np.float64) for w in layer.trainable_weights]
    f64 = f.astype(np.float64)

    def reference(features, weights):
        if mode == "paper":
            return reference_paper(features, y, weights[0], 1.0, 0.5)
        return reference_official(features, y, weights[0], weights[1], 1.0, 0.5)

    with tf.GradientTape() as tape:
        features = tf.constant(f)
        tape.watch(features)
        loss = layer(features, y)
    grads = tape.gradient(loss, [features] + layer.trainable_weights)

    want_f = _finite_difference(lambda a: reference(a, centroids), f64)
    np.testing.assert_allclose(grads[0].numpy(), want_f, rtol=1e-3, atol=1e-4)
    for i, c in enumerate(centroids):
        want_c = _finite_difference(lambda a: reference(f64, centroids[:i] + [a] + centroids[i + 1:]), c)
        np.testing.assert_allclose(grads[i + 1].numpy(), want_c, rtol=1e-3, atol=1e-4)


def test_gradient_is_finite_when_a_feature_sits_on_its_centroid():
    f, y = make_case(seed=3, batch=2, classes=3, dim=4)
    layer = built(PrototypeConformityLoss(3), f)
    on_centroid = tf.gather(layer.centroids, y)
    with tf.GradientTape() as tape:
        tape.watch(on_centroid)
        loss = layer(on_centroid, y)
    assert np.all(np.isfinite(tape.gradient(loss, on_centroid).numpy()))


def test_push_margin_bounds_the_loss_and_unbounded_eq5_diverges():
    """Minimising Eq. 5 as written runs off to -inf; with the margin it settles, bounded below."""
    f0, y = make_case(seed=4, batch=16, classes=4, dim=8)

    def minimise(margin, steps=300):
        layer = built(PrototypeConformityLoss(4, push_margin=margin), f0)
        features = tf.Variable(f0)
        opt = keras.optimizers.SGD(1.0)
        variables = [features] + layer.trainable_weights
        opt.build(variables)

        @tf.function  # one traced step: 300 eager steps cost seconds
        def step():
            with tf.GradientTape() as tape:
                loss = layer(features, y)
            opt.apply(tape.gradient(loss, variables), variables)
            return loss

        for _ in range(steps):
            loss = step()
        return float(loss), float(tf.reduce_max(tf.norm(features, axis=1)))

    bounded_loss, bounded_norm = minimise(margin=3.0)
    assert bounded_loss >= -2 * 1.0 * 3.0 - 1e-4  # the documented lower bound
    unbounded_loss, unbounded_norm = minimise(margin=None)
    assert unbounded_loss < 10 * bounded_loss  # far below the bound: Eq. 5 diverges
    assert unbounded_norm > 10 * bounded_norm


def test_nearest_prototype_rule():
    layer = PrototypeConformityLoss(3)
    layer.build((None, 2))
    layer.centroids.assign(np.array([[0, 0], [10, 0], [0, 10]], np.float32))
    features = np.array([[1, 1], [9, -1], [-1, 8]], np.float32)
    np.testing.assert_array_equal(layer.nearest_prototype(features).numpy(), [0, 1, 2])


def test_official_centroid_gradient_scales_undo_the_weights():
    layer = built(PrototypeConformityLoss(3, mode="official", pull_weight=2.0, push_weight=1e-4), np.zeros((1, 4)))
    scales = layer.centroid_gradient_scales()
    assert scales[layer.pull_centroids.path] == pytest.approx(0.5)
    assert scales[layer.push_centroids.path] == pytest.approx((1e-4 / 0.5) / 1e-4)


def test_config_round_trip():
    layer = PrototypeConformityLoss(7, mode="official", pull_weight=0.5, push_weight=0.01, push_margin=None, name="p")
    clone = PrototypeConformityLoss.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build((None, 3))
    assert [w.shape for w in clone.weights] == [(7, 3), (7, 3)]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"mode": "cosine"}, "unknown PCL mode"), ({"num_classes": 1}, "at least 2"), ({"push_margin": -1.0}, "push_margin")],
)
def test_bad_arguments(kwargs, message):
    args = {"num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        PrototypeConformityLoss(**args)
