"""The gradient-masking audit flags a deliberately masked model and passes an adversarially
trained one; each report-level check on hand-made reports."""

import keras
import pytest
import tensorflow as tf

from pcl_tf import adversarial, audit, robustness, training
from pcl_tf.attacks import registry
from synthetic import robust_and_non_robust, stripes
from test_robustness import FakeConfig, tiny_network


def train(adversary=None, seed=0):
    model = training.PCLModel(tiny_network(seed, pcl=False), 3, adversary=adversary)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, y = stripes(1500, seed=seed)
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    return model


def saturated(model, scale=1e4):
    """Gradient masking by saturation: logits x 1e4 leave every prediction unchanged but make
    the softmax exactly one-hot in float32, so the CE input gradient is exactly zero."""
    network = model.network
    x = keras.Input(network.input.shape[1:])
    logits = keras.layers.Lambda(lambda z: z * scale)(network(x)["logits"])
    return training.PCLModel(keras.Model(x, {"logits": logits}), 3)


@pytest.fixture(scope="module")
def test_set():
    x, y = stripes(200, seed=11)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(100)


def audit_of(model, test_set, eps, methods=("fgsm", "pgd")):
    reports = [robustness.evaluate(model, FakeConfig(False), test_set, workdir="m", methods=list(methods),
                                   eps=e, progress=False) for e in (eps / 2, eps)]
    return {c.name.split(" @")[0] + ("" if "@" not in c.name else "@" + c.name.split("@")[1]): c
            for c in audit.run_checks(reports, stats=audit.measure(model, test_set, eps))}


def test_audit_flags_a_gradient_masked_model(test_set):
    masked = saturated(train())
    checks = audit_of(masked, test_set, eps=0.3)
    assert checks["vanishing_gradients"].status == "flag", checks["vanishing_gradients"]
    assert checks["unbounded_eps"].status == "flag", checks["unbounded_eps"]


def test_audit_passes_an_adversarially_trained_model():
    """PGD adversarial training on data with a robust and a non-robust feature: the model that
    comes out is robust at ε = 0.1 for real, and every check passes."""
    x, y = robust_and_non_robust(2000, 0)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    f = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    network = keras.Model(inputs, {"logits": keras.layers.Dense(2, name="fc_logits")(f)})
    robust = training.PCLModel(network, 2, adversary=adversarial.AdversarialAugmentation("pgd", 0.1, 0.1, steps=5))
    robust.compile(optimizer=keras.optimizers.Adam(1e-2))
    robust.fit(x, y, batch_size=100, epochs=5, verbose=0)
    x_test, y_test = robust_and_non_robust(200, 1)
    test_set = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(100)
    checks = audit_of(robust, test_set, eps=0.1, methods=("fgsm", "bim", "pgd"))
    assert checks["iterative_vs_one_step@ε=0.1"].status == "pass"
    flagged = [c.line() for c in checks.values() if c.status == "flag"]
    assert not flagged, flagged
    assert checks["vanishing_gradients"].status == "pass" and checks["unbounded_eps"].status == "pass"


def report(eps, **robust):
    return {"eps": eps, "attacks": {m: {"robust_accuracy": r} for m, r in robust.items()},
            "worst_case": {"robust_accuracy": min(robust.values())}}


def test_report_level_checks():
    assert audit.check_iterative_vs_one_step(report(0.3, fgsm=0.2, pgd=0.1)).status == "pass"
    assert audit.check_iterative_vs_one_step(report(0.3, fgsm=0.2, pgd=0.5)).status == "flag"
    assert audit.check_iterative_vs_one_step(report(0.3, pgd=0.5)).status == "skip"
    assert audit.check_paper_vs_strong(report(0.3, pgd=0.4, **{"apgd-t": 0.05})).status == "flag"
    assert audit.check_paper_vs_strong(report(0.3, pgd=0.1, adaptive=0.08)).status == "pass"
    assert audit.check_eps_monotone([report(0.1, pgd=0.5), report(0.3, pgd=0.6)]).status == "flag"
    assert audit.check_eps_monotone([report(0.1, pgd=0.5), report(0.3, pgd=0.2)]).status == "pass"
    # FGSM doing better at the larger ε (as on the quick PCL+AdvTrain_FGSM model) is flagged.
    fgsm_rises = audit.check_eps_monotone([report(0.1, fgsm=0.65, pgd=0.3), report(0.3, fgsm=0.685, pgd=0.01)])
    assert fgsm_rises.status == "flag" and "fgsm 65.0 % → 68.5 %" in fgsm_rises.detail
    white = report(0.3, pgd=0.4, square=0.1)
    assert audit.check_white_vs_black_box(white).status == "flag"  # gradient-free beats gradients
    transfer = {"eps": 0.3, "source_model": "vgg", "attacks": {"pgd": {"robust_accuracy": 0.6}}}
    assert audit.check_white_vs_black_box(report(0.3, pgd=0.4), [transfer]).status == "pass"
    stats = audit.check_model_statistics({"restart_accuracies": [0.30, 0.42]})
    assert stats[0].status == "flag" and "spread 12.0 points" in stats[0].detail


def test_attack_groups_come_from_the_attack_table():
    """The audit's groups are derived from pcl_tf.attacks.registry, and are the ones it used."""
    assert audit.ONE_STEP == ("fgsm",)
    assert audit.ITERATIVE == ("bim", "mim", "pgd", "apgd-ce", "apgd-t", "pgd-restarts")
    assert audit.STRONG == ("apgd-t", "apgd-ce", "adaptive", "feature", "pgd-restarts")
    assert audit.GRADIENT_FREE == ("square",)
    assert audit.OUTSIDE_EPS == ("cw",)
    assert audit.PGD_LABEL not in registry.LABELS.values()  # the audit's own PGD has its own name
