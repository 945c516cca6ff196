"""bench/method_step_cost.py: it times the training step each time-to-robustness method trains with."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "bench"))

import method_step_cost as msc  # noqa: E402
import time_to_robustness as ttr  # noqa: E402

from pcl_tf.configs import fmnist_cnn6  # noqa: E402


def test_each_method_is_timed_with_the_config_the_benchmark_trains_it_with():
    """The variants and recipe of bench/time_to_robustness.py, adversarial from the first step (a
    PCL method's warm-up epoch is clean and would time a clean step); twins that differ only in
    their validation attack are not timed twice."""
    assert set(msc.STEP_METHODS) == {name for name, m in ttr.METHODS.items() if not m.same_step_as}
    assert "trades_apgd" not in msc.STEP_METHODS and "trades5" in msc.STEP_METHODS
    for name in msc.STEP_METHODS:
        config = msc.method_config(name)
        trained = fmnist_cnn6.get_config(f"{ttr.METHODS[name].variants},{ttr.RECIPE}")
        assert (config.adv.start, config.adv.eps_min, config.adv.eps_max) == ("first_step", 0.1, 0.1)
        config.adv.start, config.adv.eps_min, config.adv.eps_max = trained.adv.start, trained.adv.eps_min, trained.adv.eps_max
        assert config.to_dict() == trained.to_dict()
    clean = msc.method_config(msc.CLEAN)
    assert clean.adv.method == "none" and not clean.pcl.branches


def test_a_tiny_run_writes_the_ratios(tmp_path, capsys):
    """Real steps (8 images, one round): the clean step is the unit and the table is printed."""
    out = str(tmp_path / "cost.json")
    msc.main(["--methods=fastat", "--reference=fastat", "--steps=1", "--rounds=1", "--batch_size=8", f"--out={out}"])
    result = json.load(open(out))
    assert set(result["seconds_per_step"]) == {"clean", "fastat"}
    assert result["cost_in_clean_steps"]["clean"] == 1.0 and result["steps_per_minute_over_fastat"]["fastat"] == 1.0
    assert all(v > 0 for v in result["seconds_per_step"].values())
    assert "| fastat |" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--methods=pgd_everything"], "unknown method(s) pgd_everything"),
    (["--methods=fastat", "--reference=trades_apgd"], "unknown method(s) trades_apgd"),
    (["--steps=0"], "must be at least 1"),
])
def test_bad_flags_exit_2_with_one_line(flags, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        msc.main(flags + [f"--out={tmp_path / 'cost.json'}"])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "cost.json")
