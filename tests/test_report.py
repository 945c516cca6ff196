"""pcl_tf.report: confidence intervals, report names that never collide, and the comparison table that
only puts numbers about the same images in one row."""

import numpy as np
import pytest

from pcl_tf import evaluation, report


@pytest.mark.parametrize("k, n, low, high", [
    # Reference values (Wilson 1927 score interval, z = 1.96), e.g. statsmodels' proportion_confint(method="wilson").
    (50, 100, 0.4038, 0.5962),
    (0, 1000, 0.0, 0.003827),
    (1000, 1000, 0.996173, 1.0),
    (150, 300, 0.4436, 0.5564),  # half-width ~5.6 points at n = 300
    (500, 1000, 0.4691, 0.5309),  # ~3.1 at n = 1,000
])
def test_wilson_interval_matches_reference_values(k, n, low, high):
    got = report.wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=2e-4)


@pytest.mark.parametrize("k, n", [(1, 0), (-1, 10), (11, 10)])
def test_wilson_interval_refuses_impossible_counts(k, n):
    with pytest.raises(ValueError):
        report.wilson_interval(k, n)


def test_percent_with_interval_rounds_each_figure_to_one_decimal():
    assert report.percent_with_interval(0.5, report.wilson_interval(500, 1000)) == "50.0 [46.9, 53.1]"
    assert report.percent_with_interval(0.74049, (0.70651, 0.77)) == "74.0 [70.7, 77.0]"


def test_report_names_differ_whenever_the_settings_do():
    """Two evaluations of one model with any setting changed never write the same file; the
    same evaluation run again finds its own report (and journal) under the same name."""
    base = dict(kind="whitebox", methods=["fgsm", "pgd"], eps_values=[0.1, 0.3], num_examples=1000, seed=0)
    name = report.report_stem(**base)
    assert name == "whitebox_fgsm_pgd_eps0.1-0.3_n1000_seed0"
    assert report.report_stem(**base) == name
    variants = [dict(eps_values=[0.3]), dict(num_examples=500), dict(num_examples=0), dict(seed=1),
                dict(methods=["pgd", "fgsm"]), dict(kind="blackbox"), dict(steps=20), dict(step_size=0.01), dict(c=0.1),
                dict(source="vgg19")]
    names = {report.report_stem(**{**base, **change}) for change in variants}
    assert name not in names and len(names) == len(variants)


def _report(workdir, threat, eps, n=100, date="2026", checkpoint=None, samples=None, **robust):
    """A report as robustness.evaluate writes it; ``samples`` (attack -> bool array, plus "clean")
    adds the per-sample outcomes."""
    r = {"model": {"workdir": workdir, "checkpoint": checkpoint}, "threat_model": threat, "eps": eps,
         "num_examples": n, "clean_accuracy": 0.9, "attacks": {m: {"robust_accuracy": v} for m, v in robust.items()},
         "worst_case": {"robust_accuracy": min(robust.values()), "attacks": list(robust)},
         "environment": {"date": date}}
    if samples is not None:
        r["clean_samples"] = evaluation.pack_samples(samples["clean"])
        for m in robust:
            r["attacks"][m]["robust_samples"] = evaluation.pack_samples(samples[m])
    return r


def test_comparison_table_has_the_paper_layout_with_strong_columns():
    table = report.comparison_table([
        _report("pcl", "white-box", 0.3, fgsm=0.3, pgd=0.2, **{"apgd-t": 0.01}),
        _report("pcl", "black-box", 0.3, fgsm=0.8, pgd=0.7),
        _report("softmax", "white-box", 0.3, fgsm=0.05, pgd=0.0),
    ]).splitlines()
    assert table[0] == ("| ε | model | n | clean | FGSM | PGD | FGSM (black-box) | PGD (black-box) | APGD-T | "
                        "worst case (white-box) |")
    assert table[2] == "| 0.3 | pcl | 100 | 90.0 | 30.0 | 20.0 | 80.0 | 70.0 | 1.0 | 1.0 |"
    assert table[3] == "| 0.3 | softmax | 100 | 90.0 | 5.0 | 0.0 | – | – | – | 0.0 |"


def test_comparison_never_mixes_evaluations_of_different_images_in_one_row():
    table = report.comparison_table([
        _report("pcl", "white-box", 0.3, n=100, fgsm=0.3),
        _report("pcl", "white-box", 0.3, n=1000, pgd=0.2),
    ]).splitlines()
    assert table[2] == "| 0.3 | pcl | 100 | 90.0 | 30.0 | – | 30.0 |"
    assert table[3] == "| 0.3 | pcl | 1000 | 90.0 | – | 20.0 | 20.0 |"
    # Another checkpoint of the same work dir is another model: its own row, named by checkpoint.
    table = report.comparison_table([
        _report("pcl", "white-box", 0.3, checkpoint={"name": "ckpt-10"}, fgsm=0.3),
        _report("pcl", "white-box", 0.3, checkpoint={"name": "ckpt-20"}, fgsm=0.1),
    ]).splitlines()
    assert [line.split(" | ")[1] for line in table[2:4]] == ["pcl (ckpt-10)", "pcl (ckpt-20)"]


def test_comparison_worst_case_is_per_image_across_reports():
    """Two runs on the same 4 images: FGSM fools image 0, PGD image 1. Each report's own worst
    case is 75 %; per image only images 2 and 3 survive both: 50 %, below the lower of the two."""
    clean = np.array([1, 1, 1, 1], bool)
    fgsm = np.array([0, 1, 1, 1], bool)  # 75 %
    pgd = np.array([1, 0, 1, 1], bool)  # 75 %
    rows = report.comparison_table([
        _report("pcl", "white-box", 0.3, n=4, samples={"clean": clean, "fgsm": fgsm}, fgsm=0.75),
        _report("pcl", "white-box", 0.3, n=4, date="2027", samples={"clean": clean, "pgd": pgd}, pgd=0.75),
    ]).splitlines()
    assert rows[2] == "| 0.3 | pcl | 4 | 90.0 | 75.0 | 75.0 | 50.0 |"  # images 2 and 3 survive both
    # Reports written before per-sample outcomes were kept: an upper bound, said so.
    table = report.comparison_table([
        _report("pcl", "white-box", 0.3, n=4, fgsm=0.75),
        _report("pcl", "white-box", 0.3, n=4, date="2027", pgd=0.75),
    ])
    assert table.splitlines()[2].endswith("| ≤ 75.0 |") and "upper bound" not in table.splitlines()[2]
    assert "at most this" in table


def test_per_sample_outcomes_round_trip():
    mask = np.random.default_rng(0).random(1001) < 0.5
    text = evaluation.pack_samples(mask)
    assert len(text) == 2 * 126
    np.testing.assert_array_equal(evaluation.unpack_samples(text, 1001), mask)
