"""report.wilson_interval: the 95 % interval quoted with every robust accuracy."""

import pytest

from pcl_tf import report


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
