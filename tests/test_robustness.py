"""Evaluation of trained models: per-sample worst case, report schema, black-box path, adaptive
and feature-space attacks, transfer matrix, and pcl-attack's one-line errors."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from pcl_tf import attacks, evaluation, report, robustness, training
from synthetic import stripes

CLASSES = 3


def tiny_network(seed, pcl: bool):
    keras.utils.set_random_seed(seed)
    x = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h))
    f = keras.layers.Dense(16, activation="relu", name="fc16")(h)
    outputs = {"logits": keras.layers.Dense(CLASSES, name="fc_logits")(f)}
    if pcl:
        outputs["feat_fc16"] = f
    return keras.Model(x, outputs)


def trained(seed, pcl):
    model = training.PCLModel(tiny_network(seed, pcl), CLASSES)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x, y = stripes(1200, seed=seed)
    model.fit(x, y, batch_size=64, epochs=2, verbose=0, callbacks=[training.PCLSchedule(1)])
    return model


class FakeConfig(dict):
    """The few config fields a report records."""

    def __init__(self, pcl):
        super().__init__(dataset="fashion_mnist", model="tiny")
        self.dataset, self.model = "fashion_mnist", "tiny"
        self.pcl = type("P", (), {"branches": "fc16" if pcl else "", "mode": "paper"})()


@pytest.fixture(scope="module")
def models():
    return {"pcl": trained(0, pcl=True), "softmax": trained(1, pcl=False)}


@pytest.fixture(scope="module")
def test_set():
    x, y = stripes(96, seed=7)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(48)


def test_models_learn_the_task(models, test_set):
    for model in models.values():
        assert evaluation.clean_accuracy(model, test_set)["softmax"] > 0.9


def test_summary_worst_case_is_per_sample():
    results = {
        "clean_correct": np.array([1, 1, 1, 0], bool),
        "a/correct": np.array([1, 0, 1, 1], bool),
        "b/correct": np.array([0, 1, 1, 1], bool),
    }
    for name in ("a", "b"):
        results.update({f"{name}/linf": np.zeros(4), f"{name}/l2": np.zeros(4), f"{name}/seconds": np.array([1.0])})
    summary = evaluation.summarize(results, ["a", "b"])
    assert summary["clean_accuracy"] == 0.75
    assert summary["attacks"]["a"]["robust_accuracy"] == 0.5  # sample 3: wrong when clean, never robust
    assert summary["attacks"]["b"]["robust_accuracy"] == 0.5
    assert summary["worst_case"]["robust_accuracy"] == 0.25  # only sample 2 survives both


def test_worst_case_leaves_out_attacks_not_bounded_by_eps():
    results = {"clean_correct": np.array([1, 1, 1, 1], bool)}
    for name, correct in (("cw", [0, 0, 0, 0]), ("pgd", [1, 1, 0, 1])):
        results.update({f"{name}/correct": np.array(correct, bool), f"{name}/linf": np.zeros(4),
                        f"{name}/l2": np.zeros(4), f"{name}/seconds": np.array([1.0])})
    summary = evaluation.summarize(results, ["cw", "pgd"], worst_case_over=["pgd"])
    assert summary["attacks"]["cw"]["robust_accuracy"] == 0.0
    assert summary["worst_case"]["robust_accuracy"] == 0.75 and summary["worst_case"]["attacks"] == ["pgd"]
    # A C&W-only report has no worst case at ε: the table says so instead of showing clean accuracy.
    only_cw = evaluation.summarize(results, ["cw"], worst_case_over=[])
    rep = {"model": {"workdir": "m"}, "threat_model": "white-box", "eps": 0.3, "num_examples": 4,
           "clean_accuracy": 1.0, "attacks": {"cw": only_cw["attacks"]["cw"]}, "worst_case": only_cw["worst_case"]}
    assert report.markdown_table([rep]).splitlines()[2].endswith("| 0.0 | – |")


@pytest.mark.parametrize("within_eps", [False, True])
def test_cascade_starts_from_the_images_the_eps_bounded_attacks_left(models, test_set, within_eps):
    """An image fooled only by an attack outside the ε-ball (C&W-L2) is still attacked by the
    cascade; one fooled inside the ball is not."""
    seen = []

    def blank(model, x, y):  # breaks (nearly) everything: a constant image
        return tf.zeros_like(x)

    def record(model, x, y):
        seen.append(int(tf.shape(x)[0]))
        return x

    breaker = attacks.Attack("cw", blank, False, within_eps=within_eps)
    follower = attacks.Attack("apgd-ce", record, False, cascade=True)
    results = evaluation.attack_dataset(models["softmax"], test_set, [breaker, follower], progress=False)
    clean, broken = results["clean_correct"], ~results["cw/correct"]
    assert broken[clean].mean() > 0.5  # the constant image really fools the model
    expected = clean.sum() if not within_eps else (clean & ~broken).sum()
    assert sum(seen) == expected


def test_white_box_report_schema_and_files(models, test_set, tmp_path):
    rep = robustness.evaluate(models["pcl"], FakeConfig(True), test_set, workdir="pcl", methods=list(attacks.METHODS),
                              eps=0.3, steps=5, c=10.0, progress=False)
    rep = json.loads(json.dumps(rep))  # JSON-serialisable as written
    assert set(rep) == {"model", "threat_model", "source_model", "eps", "num_examples", "clean_accuracy",
                        "clean_samples", "attacks", "worst_case", "seed", "environment"}
    assert evaluation.unpack_samples(rep["clean_samples"], 96).sum() == round(96 * rep["clean_accuracy"])
    assert rep["threat_model"] == "white-box" and rep["num_examples"] == 96
    assert list(rep["attacks"]) == list(attacks.METHODS)  # paper order, then the adaptive ones
    for name, a in rep["attacks"].items():
        assert {"params", "robust_accuracy", "robust_count", "robust_samples", "mean_linf", "max_linf", "mean_l2",
                "max_l2", "seconds"} <= set(a)
        assert evaluation.unpack_samples(a["robust_samples"], 96).sum() == a["robust_count"]  # the per-image outcome
        if name != "cw":  # C&W-L2 is not bounded by ε: outside the ε-ball and the worst case
            assert a["max_linf"] <= 0.3 + 1e-6
            assert rep["worst_case"]["robust_accuracy"] <= a["robust_accuracy"]
    assert "cw" not in rep["worst_case"]["attacks"] and "pgd" in rep["worst_case"]["attacks"]
    assert rep["attacks"]["pgd"]["params"] == {"eps": 0.3, "steps": 5, "step_size": pytest.approx(0.03)}
    # The undefended tiny model falls to the iterative attacks at ε = 0.3.
    assert rep["attacks"]["pgd"]["robust_accuracy"] < 0.2
    stem = str(tmp_path / "reports" / "r")
    report.write(stem, [rep])
    assert json.load(open(stem + ".json"))[0]["eps"] == 0.3
    table = open(stem + ".md").read().splitlines()
    assert table[0] == ("| model | threat | ε | n | clean | FGSM | BIM | C&W | MIM | PGD | adaptive | feature | "
                        "APGD-CE | APGD-T | Square | PGD-restarts | worst case |")
    assert len(table) == 7 and table[4].startswith("APGD-CE, APGD-T, Square, PGD-restarts: run, as in AutoAttack")
    assert table[6].startswith("C&W: an L2 attack not bounded by ε")
    # Cascaded numbers are cumulative: never above the worst case of the attacks before them.
    before = min(rep["attacks"][m]["robust_accuracy"] for m in ("fgsm", "bim", "cw", "mim", "pgd", "adaptive", "feature"))
    assert rep["attacks"]["apgd-ce"]["robust_accuracy"] <= before
    assert rep["attacks"]["apgd-ce"]["cascade"] and not rep["attacks"]["pgd"]["cascade"]


def test_black_box_crafts_on_the_source(models, test_set):
    """With a source whose input gradient is zero, FGSM cannot move: black-box accuracy is the
    clean accuracy, while the same attack white-box ruins the target."""
    keras.utils.set_random_seed(2)
    x = keras.Input((28, 28, 1))
    flat = keras.layers.Lambda(lambda t: 0.0 * t)(x)
    blind = keras.Model(x, {"logits": keras.layers.Dense(CLASSES, name="fc_logits")(keras.layers.Flatten()(flat))})
    source = training.PCLModel(blind, CLASSES)
    target = models["softmax"]
    black = robustness.evaluate(target, FakeConfig(False), test_set, workdir="t", methods=["fgsm"], eps=0.3,
                                source=source, source_workdir="blind", progress=False)
    white = robustness.evaluate(target, FakeConfig(False), test_set, workdir="t", methods=["fgsm"], eps=0.3,
                                progress=False)
    assert black["threat_model"] == "black-box" and black["source_model"] == "blind"
    assert black["attacks"]["fgsm"]["robust_accuracy"] == pytest.approx(black["clean_accuracy"])
    assert black["attacks"]["fgsm"]["max_linf"] == 0.0
    assert white["attacks"]["fgsm"]["robust_accuracy"] < black["attacks"]["fgsm"]["robust_accuracy"] - 0.3
    # Several targets: crafted once on the source, one report per target.
    both = robustness.evaluate_many({"s": (models["softmax"], FakeConfig(False)), "p": (models["pcl"], FakeConfig(True))},
                                    test_set, methods=["fgsm"], eps=0.3, source=source, source_workdir="blind",
                                    progress=False)
    assert [r["model"]["workdir"] for r in both] == ["s", "p"]
    assert all(r["attacks"]["fgsm"]["robust_accuracy"] == pytest.approx(r["clean_accuracy"]) for r in both)


def test_feature_attack_moves_features_toward_the_wrong_prototype(models):
    from pcl_tf.attacks import adaptive

    model = models["pcl"]
    x, y = stripes(32, seed=9)
    target = adaptive.nearest_wrong_prototype(model, x, tf.constant(y)).numpy()
    assert np.all(target != y)
    x_adv = adaptive.feature_space(model, x, y, eps=0.3, steps=10, step_size=0.03, seed=0)
    assert np.abs(x_adv.numpy() - x).max() <= 0.3 + 1e-6 and x_adv.numpy().min() >= 0 and x_adv.numpy().max() <= 1
    goal = tf.gather(model.pc_layers[0].prototypes, target)
    features = lambda v: model.network(v, training=False)["feat_fc16"]  # noqa: E731
    before = tf.norm(features(x) - goal, axis=1).numpy().mean()
    after = tf.norm(features(x_adv) - goal, axis=1).numpy().mean()
    assert after < 0.7 * before


def test_feature_attack_refuses_a_model_without_prototypes(models):
    from pcl_tf.attacks import adaptive

    x, y = stripes(4, seed=1)
    with pytest.raises(ValueError, match="needs prototypes"):
        adaptive.feature_space(models["softmax"], x, y, eps=0.1, steps=1, step_size=0.01)
    assert robustness.usable_methods(models["softmax"], ["pgd", "feature"]) == ["pgd"]


def test_transfer_matrix_diagonal_is_the_white_box_number(models, test_set):
    fgsm = attacks.make_attack("fgsm", {"eps": 0.3})
    matrix = robustness.transfer_matrix(models, test_set, fgsm)
    white = robustness.evaluate(models["pcl"], FakeConfig(True), test_set, workdir="pcl", methods=["fgsm"],
                                eps=0.3, progress=False)
    assert matrix["pcl"]["pcl"] == pytest.approx(white["attacks"]["fgsm"]["robust_accuracy"])
    assert set(matrix) == set(matrix["pcl"]) == {"pcl", "softmax"}
    assert "| FGSM ε=0.3" in report.transfer_table(matrix, "fgsm", 0.3)


def test_eps_plot_is_a_png(models, test_set, tmp_path):
    reports = [robustness.evaluate(models["softmax"], FakeConfig(False), test_set, workdir="s", methods=["fgsm"],
                                   eps=e, progress=False) for e in (0.0, 0.3)]
    assert reports[0]["attacks"]["fgsm"]["robust_accuracy"] == pytest.approx(reports[0]["clean_accuracy"])
    path = str(tmp_path / "eps.png")
    report.plot_eps_curves(reports, path)
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workdir=/nonexistent/run"], "does not exist"),
        (["--workdir=x", "--method=deepfool"], "unknown attack 'deepfool'"),
        (["--workdir=x", "--eps=1.5"], "outside [0, 1]"),
        (["--workdir=x", "--eps=abc"], "not a number"),
        (["--workdir=x", "--c=0"], "--c=0.0 must be > 0"),
        (["--workdir=x", "--steps=0"], "--steps=0 must be > 0"),
        ([], "give --workdir"),
    ],
)
def test_pcl_attack_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pcl_tf.cli.attack", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("pcl-attack: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == []  # nothing written


def test_adaptive_attacks_are_reproducible_from_their_seed(models):
    from pcl_tf.attacks import adaptive

    x, y = stripes(16, seed=3)
    for attack in (adaptive.adaptive_pc, adaptive.feature_space):
        first = attack(models["pcl"], x, y, eps=0.3, steps=3, step_size=0.05, seed=7).numpy()
        attack(models["pcl"], x, y, eps=0.3, steps=3, step_size=0.05, seed=8)  # something in between
        again = attack(models["pcl"], x, y, eps=0.3, steps=3, step_size=0.05, seed=7).numpy()
        np.testing.assert_array_equal(first, again)
