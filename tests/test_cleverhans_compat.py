"""Property tests of pcl_tf.attacks.cleverhans_compat on a small undefended CNN.

The model is trained for about a second on synthetic 28x28x1 images of three stripe patterns
(horizontal, vertical, diagonal) under Gaussian noise; it reaches ~100 % clean accuracy and is,
being undefended, easy to fool at ε = 0.3. Attacks get its logits-only twin (a Keras 3 functional
model sharing the trained layers) or a plain callable around it.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from cleverhans.tf2.attacks.carlini_wagner_l2 import CarliniWagnerL2  # noqa: E402

from pcl_tf.attacks import cleverhans_compat as ch  # noqa: E402
from synthetic import stripes  # noqa: E402

N_TEST = 96
LINF = ("fgsm", "bim", "mim", "pgd")


@pytest.fixture(scope="module")
def setup():
    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    logits = keras.layers.Dense(3, name="logits")(h)
    probs = keras.layers.Activation("softmax")(logits)
    classifier = keras.Model(inp, probs)  # trained with a softmax head ...
    classifier.compile(
        keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", jit_compile=False
    )
    x_train, y_train = stripes(1500, seed=0)
    classifier.fit(x_train, y_train, batch_size=64, epochs=3, verbose=0)
    twin = keras.Model(inp, logits)  # ... attacked through its logits-only twin
    x, y = stripes(N_TEST, seed=1)
    return twin, x, y


def _model_fn(setup, kind):
    twin = setup[0]
    return twin if kind == "keras_model" else (lambda t: twin(t, training=False))


def _accuracy(model_fn, x, y):
    return float(np.mean(np.argmax(np.asarray(model_fn(x)), axis=1) == y))


def _run(name, model_fn, x, y, eps, **extra):
    if name == "fgsm":
        return ch.fgsm(model_fn, x, y, eps=eps)
    if name == "mim":
        return ch.mim(model_fn, x, y, eps=eps, steps=10, step_size=max(eps / 10, 0.01), **extra)
    fn = {"bim": ch.bim, "pgd": ch.pgd}[name]
    return fn(model_fn, x, y, eps=eps, steps=10, step_size=max(eps / 10, 0.01), **extra)


def test_model_learns_the_synthetic_task(setup):
    twin, x, y = setup
    assert _accuracy(twin, x, y) > 0.9


@pytest.mark.parametrize("name", LINF)
def test_eps_zero_returns_the_input(setup, name):
    twin, x, y = setup
    # step_size 0.01 > eps = 0: clamped, not CleverHans' `assert eps_iter <= eps`.
    x_adv = _run(name, twin, x, y, eps=0.0)
    np.testing.assert_array_equal(np.asarray(x_adv), x)


@pytest.mark.parametrize("name", ["bim", "mim", "pgd"])
def test_eps_zero_accepts_step_size_zero(setup, name):
    twin, x, y = setup
    fn = {"bim": ch.bim, "mim": ch.mim, "pgd": ch.pgd}[name]
    # step_size = eps / 10 = 0 is what the registry's defaults give for eps = 0.
    x_adv = fn(twin, x[:8], y[:8], eps=0.0, steps=2, step_size=0.0)
    np.testing.assert_array_equal(np.asarray(x_adv), x[:8])


@pytest.mark.parametrize("eps", [0.05, 0.3])
@pytest.mark.parametrize("name", LINF)
def test_linf_perturbation_stays_in_the_ball_and_the_box(setup, name, eps):
    twin, x, y = setup
    x_adv = _run(name, twin, x, y, eps=eps)
    assert isinstance(x_adv, tf.Tensor) and x_adv.dtype == tf.float32 and x_adv.shape == x.shape
    x_adv = x_adv.numpy()
    assert np.abs(x_adv - x).max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("kind", ["keras_model", "callable"])
@pytest.mark.parametrize("name", LINF)
def test_linf_attacks_flip_most_predictions_at_eps_03(setup, name, kind):
    _, x, y = setup
    model_fn = _model_fn(setup, kind)
    x_adv = _run(name, model_fn, tf.constant(x), y, eps=0.3)
    assert _accuracy(model_fn, x_adv, y) < 0.2


def test_pgd_random_start_seed_and_bim_equivalence(setup):
    twin, x, y = setup
    x, y = x[:16], y[:16]
    a = ch.pgd(twin, x, y, eps=0.1, steps=1, step_size=0.01, seed=3).numpy()
    b = ch.pgd(twin, x, y, eps=0.1, steps=1, step_size=0.01, seed=3).numpy()
    np.testing.assert_array_equal(a, b)
    # rand_init=False is BIM; with the random start the first step starts elsewhere.
    bim = ch.bim(twin, x, y, eps=0.1, steps=1, step_size=0.01).numpy()
    no_start = ch.pgd(twin, x, y, eps=0.1, steps=1, step_size=0.01, rand_init=False).numpy()
    np.testing.assert_array_equal(bim, no_start)
    assert np.abs(a - bim).max() > 0.02


@pytest.mark.parametrize("kind", ["keras_model", "callable"])
def test_cw_l2_changes_the_input_and_flips_most_labels(setup, kind):
    _, x, y = setup
    model_fn = _model_fn(setup, kind)
    x, y = x[:64], y[:64]
    x_adv = ch.cw_l2(model_fn, x, y, c=10.0, steps=100, binary_search_steps=1)
    assert isinstance(x_adv, tf.Tensor) and x_adv.dtype == tf.float32 and x_adv.shape == x.shape
    x_adv = x_adv.numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # The naive Keras 3 fix (or the targeted-by-default bug) returns the input: rule that out.
    per_image = np.abs(x_adv - x).reshape(len(x), -1).max(axis=1)
    assert np.mean(per_image > 0.01) > 0.8
    assert _accuracy(model_fn, x_adv, y) < 0.2


def test_cw_l2_in_chunks_with_binary_search(setup):
    twin, x, y = setup
    x, y = x[:24], y[:24]
    x_adv = ch.cw_l2(twin, x, y, c=1.0, steps=50, binary_search_steps=2, batch_size=10).numpy()
    assert _accuracy(twin, x_adv, y) < 0.2
    # Minimum-distortion: successful examples are close in L2, far below the ε=0.3 L∞ box (≈8.4).
    l2 = np.sqrt(((x_adv - x) ** 2).reshape(len(x), -1).sum(axis=1))
    assert np.median(l2) < 5.0


@pytest.mark.parametrize("binary_search_steps", [1, 2])
def test_cw_l2_result_for_an_image_does_not_depend_on_its_batch(setup, binary_search_steps):
    """CleverHans multiplies the per-example loss by an image-shaped constant, which weights it by
    c·batch·pixels (fix 8): the same image then comes out differently alone and in a batch."""
    twin, x, y = setup
    kwargs = dict(c=10.0, steps=60, binary_search_steps=binary_search_steps)
    alone = ch.cw_l2(twin, x[:1], y[:1], **kwargs).numpy()
    in_batch = ch.cw_l2(twin, x[:8], y[:8], **kwargs).numpy()
    assert np.abs(alone - x[:1]).max() > 1e-3  # it moved
    np.testing.assert_allclose(in_batch[:1], alone, atol=1e-4)


def test_cleverhans_cw_as_shipped_weights_the_loss_by_the_batch(setup):
    """The bug fix 8 removes, shown on CleverHans' own class: at c = 1e-3 the effective weight is
    c·1·784 ≈ 0.8 for an image alone and c·8·784 ≈ 6.3 in a batch of 8, so the image comes out
    differently; with the fix it does not (the test above)."""
    twin, x, y = setup
    outputs = []
    for n in (1, 8):
        attack = CarliniWagnerL2(twin, y=y[:n], batch_size=n, max_iterations=60, binary_search_steps=1,
                                 initial_const=1e-3)
        attack.targeted = False
        attack.optimizer = ch._CWAdam(0.01)
        outputs.append(attack.attack(x[:n])[:1])
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3


def test_cw_l2_returns_the_input_where_it_fails(setup):
    twin, x, y = setup
    # c so small that the distortion term dominates: no step succeeds, the inputs come back as is.
    x_adv = ch.cw_l2(twin, x[:8], y[:8], c=1e-6, steps=5, binary_search_steps=1).numpy()
    np.testing.assert_array_equal(x_adv, x[:8])


def test_naive_keras3_shim_for_cleverhans_cw_is_a_silent_no_op(setup):
    """Why cleverhans_compat._CWAdam keeps the learning rate out of the reset list."""
    twin, x, y = setup
    x, y = x[:8], y[:8]

    class NaiveShim(ch._CWAdam):
        def variables(self):
            return self._adam.variables  # learning rate included -> zeroed by the attack

    attack = CarliniWagnerL2(
        twin, y=y, batch_size=8, max_iterations=30, binary_search_steps=1, initial_const=10.0
    )
    attack.targeted = False
    attack.optimizer = NaiveShim(0.01)
    assert np.abs(attack.attack(x) - x).max() < 1e-4
    assert float(attack.optimizer._adam.learning_rate.numpy()) == 0.0


BAD_ARGUMENTS = [
    ("fgsm", dict(eps=-0.1), "eps"),
    ("fgsm", dict(eps=1.5), "eps"),
    ("bim", dict(eps=0.3, steps=0, step_size=0.03), "steps"),
    ("bim", dict(eps=0.3, steps=10, step_size=0.0), "step_size"),
    ("mim", dict(eps=0.3, steps=10, step_size=-0.03), "step_size"),
    ("pgd", dict(eps=0.3, steps=2.5, step_size=0.03), "steps"),
    ("cw_l2", dict(c=0.0), "c"),
    ("cw_l2", dict(c=-1.0), "c"),
    ("cw_l2", dict(c=1.0, steps=0), "steps"),
]


@pytest.mark.parametrize("name,kwargs,word", BAD_ARGUMENTS)
def test_bad_parameters_raise_value_error(setup, name, kwargs, word):
    twin, x, y = setup
    with pytest.raises(ValueError, match=word):
        getattr(ch, name)(twin, x[:2], y[:2], **kwargs)


BAD_INPUTS = [
    ("float64", lambda x, y: (x.astype(np.float64), y), "float32"),
    ("rank-3", lambda x, y: (x[..., 0], y), "rank-4"),
    ("above 1", lambda x, y: (x + 1.0, y), r"\[0, 1\]"),
    ("below 0", lambda x, y: (x - 1.0, y), r"\[0, 1\]"),
    ("y too short", lambda x, y: (x, y[:1]), "shape"),
    ("y one-hot", lambda x, y: (x, np.eye(3, dtype=np.int32)[y]), "shape"),
    ("y float", lambda x, y: (x, y.astype(np.float32)), "integer"),
]


@pytest.mark.parametrize("name", ["fgsm", "bim", "mim", "pgd", "cw_l2"])
@pytest.mark.parametrize("label,corrupt,word", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_inputs_raise_value_error(setup, name, label, corrupt, word):
    twin, x, y = setup
    bad_x, bad_y = corrupt(x[:2], y[:2])
    kwargs = {
        "fgsm": dict(eps=0.1),
        "bim": dict(eps=0.1, steps=1, step_size=0.01),
        "mim": dict(eps=0.1, steps=1, step_size=0.01),
        "pgd": dict(eps=0.1, steps=1, step_size=0.01),
        "cw_l2": dict(c=1.0, steps=1),
    }[name]
    with pytest.raises(ValueError, match=word):
        getattr(ch, name)(twin, bad_x, bad_y, **kwargs)
