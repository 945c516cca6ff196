"""bench/catastrophic_overfitting.py: both methods train at identical settings, and a collapse is
recognised from the validation history (the runs themselves take tens of minutes)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "bench"))

import catastrophic_overfitting as co  # noqa: E402


def test_the_methods_differ_only_in_the_method(tmp_path):
    fast = co.train_step(str(tmp_path), "fastat", co.Setting(0.3, 8, 20000)).args
    guarded = co.train_step(str(tmp_path), "nfgsm", co.Setting(0.3, 8, 20000)).args
    differ = sorted(set(fast) ^ set(guarded))
    assert all(a.startswith(("--config=", "--workdir=")) for a in differ), differ
    for expected in ("--config.train.robust_val_examples=1000", "--config.train.num_examples=21000",
                     "--config.train.robust_val_eps=0.3", "--config.adv.eps_min=0.3", "--config.adv.eps_max=0.3",
                     # planned in epochs, without a time budget: the one-cycle over the planned steps
                     "--config.train.lr_schedule=one_cycle"):
        assert expected in fast and expected in guarded
    assert "--config.train.time_budget_minutes=0" in fast  # the budget recipe's own 30 minutes are off


def test_a_collapse_is_pgd_accuracy_near_zero_while_fgsm_accuracy_stays_high():
    curve = {"epoch": [1, 2, 3, 4], "val_robust_accuracy": [0.02, 0.40, 0.45, 0.01],
             "val_fgsm_accuracy": [0.1, 0.5, 0.6, 0.8]}
    found = co.diagnosis(curve)
    assert found["collapsed"] and (found["peak_epoch"], found["peak_pgd"], found["epochs"]) == (3, 0.45, 4)
    assert "peaked at 45.0 % (epoch 3), 1.0 % after epoch 4 while FGSM leaves 80.0 %: catastrophic overfitting" in \
        co.describe("fast AT", found)
    # Robust at the end: no collapse, whatever happened before.
    assert not co.diagnosis({**curve, "val_robust_accuracy": [0.02, 0.40, 0.01, 0.5]})["collapsed"]
    # Low PGD and low FGSM accuracy alike is a weak model, not a masked one.
    assert not co.diagnosis({**curve, "val_fgsm_accuracy": [0.1, 0.5, 0.6, 0.2]})["collapsed"]
    assert co.diagnosis({"epoch": [1], "val_robust_accuracy": [None], "val_fgsm_accuracy": [None]})["epochs"] == 0


def test_table_has_one_row_per_epoch_and_a_dash_where_a_method_has_not_got_there():
    found = {"fastat": {"epoch": [1, 2], "val_clean_accuracy": [0.8, 0.9], "val_fgsm_accuracy": [0.5, 0.9],
                        "val_robust_accuracy": [0.4, 0.0]},
             "nfgsm": {"epoch": [1], "val_clean_accuracy": [0.8], "val_fgsm_accuracy": [0.5],
                       "val_robust_accuracy": [0.45]}}
    lines = co.table(found).strip().splitlines()
    assert len(lines) == 4 and lines[2].startswith("| 1 | 80.0 | 50.0 | 40.0 | 80.0 | 50.0 | 45.0")
    assert lines[3] == "| 2 | 90.0 | 90.0 | 0.0 | – | – | – |"


def test_each_setting_writes_its_own_report_by_default():
    """A run at another ε or length must not write over the ε 0.3 / 8-epoch report the docs cite."""
    assert co.output_name(co.Setting(0.3, 8, 20000)) == "catastrophic_overfitting"
    assert co.output_name(co.Setting(0.2, 8, 20000)) == "catastrophic_overfitting_eps0.2"
    assert co.output_name(co.Setting(0.2, 16, 20000)) == "catastrophic_overfitting_eps0.2_16ep"
    assert co.output_name(co.Setting(0.3, 8, 5000)) == "catastrophic_overfitting_5000img"
    # Other methods at a setting already reported (fast AT against N-FGSM) get their own report.
    at_0_2 = co.Setting(0.2, 8, 20000)
    assert co.output_name(at_0_2, methods=["fgsm", "nfgsm"]) == "catastrophic_overfitting_eps0.2_fgsm_nfgsm"
    assert co.output_name(at_0_2, methods=["fastat", "nfgsm"]) == "catastrophic_overfitting_eps0.2"


def test_the_methods_are_the_budget_benchmarks_stopped_by_pgd_and_plain_fgsm():
    """The curves are held-out PGD-10 accuracy: the budget benchmark's APGD-CE-stopped twins, whose
    histories hold APGD-CE's, are not offered."""
    assert set(co.METHODS) == set(co.BUDGET_METHODS) - {"nfgsm_apgd", "trades_apgd"} | {"fgsm"}


def test_plain_fgsm_is_n_fgsm_without_its_noise(tmp_path):
    """The guard's ablation: plain FGSM training takes N-FGSM's step of ε from the clean image
    (no noise, hence nothing to project), on adversarial images only at the same fixed ε."""
    from pcl_tf import training_setup
    from pcl_tf.configs import fmnist_cnn6

    plain = co.train_step(str(tmp_path), "fgsm", co.Setting(0.2, 8, 20000)).args
    guarded = co.train_step(str(tmp_path), "nfgsm", co.Setting(0.2, 8, 20000)).args
    assert all(a.startswith(("--config=", "--workdir=")) for a in set(plain) ^ set(guarded))
    assert f"--workdir={tmp_path}/fgsm_eps0.2" in plain
    variants = next(a for a in plain if a.startswith("--config=")).split(":", 1)[1]
    augment = training_setup.make_adversary(fmnist_cnn6.get_config(variants))
    assert (augment.method, augment.include_clean) == ("fgsm", False)


def test_a_ramped_run_is_its_own_run_and_report(tmp_path):
    """The ε ramp (training ε from 0 to full over the first epochs) is the curriculum to try where a
    fixed ε collapses: its runs and report must not mix with the fixed-ε ones at the same ε."""
    ramped = co.train_step(str(tmp_path), "fastat", co.Setting(0.3, 8, 20000, 3))
    fixed = co.train_step(str(tmp_path), "fastat", co.Setting(0.3, 8, 20000))
    assert "--config.adv.eps_ramp_epochs=3" in ramped.args
    assert not any("eps_ramp" in a for a in fixed.args)
    assert f"--workdir={tmp_path}/fastat_eps0.3_ramp3" in ramped.args and ramped.done_when != fixed.done_when
    assert "--config.train.robust_val_eps=0.3" in ramped.args  # validated at the full ε throughout
    assert co.output_name(co.Setting(0.3, 8, 20000, 3)) == "catastrophic_overfitting_ramp3"


def test_runs_of_another_length_or_size_are_their_own_runs(tmp_path):
    """A finished 8-epoch run under --root must not be reported as (or extended into) a 16-epoch one:
    epochs and images per epoch name the run like they name the report; the default setting keeps
    the names its stashed runs have."""
    default = co.train_step(str(tmp_path), "nfgsm", co.Setting(0.2, 8, 20000))
    longer = co.train_step(str(tmp_path), "nfgsm", co.Setting(0.2, 16, 20000))
    smaller = co.train_step(str(tmp_path), "nfgsm", co.Setting(0.2, 8, 5000))
    assert f"--workdir={tmp_path}/nfgsm_eps0.2" in default.args
    assert f"--workdir={tmp_path}/nfgsm_eps0.2_16ep" in longer.args
    assert f"--workdir={tmp_path}/nfgsm_eps0.2_5000img" in smaller.args
    assert len({default.done_when, longer.done_when, smaller.done_when}) == 3
    assert co.run_name("fastat", co.Setting(0.3, 16, 5000, 2)) == "fastat_eps0.3_16ep_5000img_ramp2"
