"""bench/time_to_robustness.py: how a time budget becomes a schedule (the runs themselves are hours)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "bench"))

import time_to_robustness as ttr  # noqa: E402

from pcl_tf import io_utils  # noqa: E402
from pcl_tf.configs import fmnist_cnn6  # noqa: E402


def test_schedule_fills_the_budget_in_whole_epochs_or_two_passes_over_a_subset():
    # Planned for 2.5x the calibrated steps (the budget, not the epochs, ends a run).
    assert ttr.PLANNED_STEPS_OVER_CALIBRATED == 2.5
    assert ttr.STEPS_PER_EPOCH == 231  # 59,000 training images (1,000 held out) in batches of 256
    # 1 step/s for 30 min: 4,500 planned steps = 20 full adversarial epochs of 231 (rounded up);
    # 8 expected to fit. PCL's clean CE warm-up comes on top: 1 epoch (1/7 of 1 + 8, rounded).
    assert ttr.plan_schedule(1.0, 30, pcl=False) == {"train.epochs": 20, "train.num_examples": 0, "train.warmup_epochs": 0}
    assert ttr.plan_schedule(1.0, 30, pcl=True) == {"train.epochs": 21, "train.num_examples": 0, "train.warmup_epochs": 1}
    # 0.12 step/s (TRADES' calibration) for 30 min: 540 planned steps = 3 epochs, not 2 (462 steps).
    assert ttr.plan_schedule(0.12, 30, pcl=False)["train.epochs"] == 3
    # 3 steps/s for 60 min: 27,000 planned = 117 epochs, 46.8 expected: 8 warm-up epochs (8/55 ~ 1/7).
    assert ttr.plan_schedule(3.0, 60, pcl=True) == {"train.epochs": 125, "train.num_examples": 0, "train.warmup_epochs": 8}
    # 0.05 step/s for 30 min = 225 planned steps: two passes over 112 batches of the training set
    # (plus the 1,000 images held out for robust early stopping); PCL's warm-up is one clean pass
    # over the same images first (a whole epoch is the least it can be).
    assert ttr.plan_schedule(0.05, 30, pcl=False) == {"train.epochs": 2, "train.num_examples": 112 * 256 + 1000,
                                                     "train.warmup_epochs": 0}
    assert ttr.plan_schedule(0.05, 30, pcl=True) == {"train.epochs": 3, "train.num_examples": 112 * 256 + 1000,
                                                    "train.warmup_epochs": 1}
    # The lr follows the clock, so the budget is what ends every run at lr 0.
    assert ttr.RECIPE == "budget"
    recipe = fmnist_cnn6.get_config("softmax,madry,nfgsm,budget").train
    assert (recipe.lr_schedule, recipe.time_budget_minutes, recipe.robust_val_examples) == ("one_cycle_time", 30.0, 1000)
    assert (recipe.warmup_epochs, fmnist_cnn6.get_config("advpgd,budget").train.warmup_epochs) == (0, 1)


def test_every_method_trains_at_the_same_eps_with_the_shared_recipe(tmp_path):
    for method in ttr.METHODS.values():
        args = ttr._train_args(method, str(tmp_path), 0.1, {"train.epochs": 3})
        assert f"--config={ttr.CNN6}:{method.variants},budget" in args
        assert "--config.adv.eps_min=0.1" in args and "--config.adv.eps_max=0.1" in args
        assert ("--config.adv.start=joint" in args) == method.pcl  # softmax methods attack from step 1


def test_an_apgd_stopped_method_is_its_twin_validated_by_apgd_ce(tmp_path):
    """nfgsm_apgd / trades_apgd differ from nfgsm / trades only in the attack robust early stopping
    ranks epochs by; they reuse the twin's calibration minute and run only when named."""
    for name, twin in (("nfgsm_apgd", "nfgsm"), ("trades_apgd", "trades")):
        method, base = ttr.METHODS[name], ttr.METHODS[twin]
        config = fmnist_cnn6.get_config(f"{method.variants},budget")
        twin_config = fmnist_cnn6.get_config(f"{base.variants},budget")
        assert (config.train.robust_val_attack, twin_config.train.robust_val_attack) == ("apgd-ce", "pgd")
        config.train.robust_val_attack = "pgd"
        assert config.to_dict() == twin_config.to_dict()
        assert method.calibration == twin and ttr.calibration_step(str(tmp_path), method).name == f"calibrate_{twin}"
        assert name not in ttr.DEFAULT_METHODS and ttr.run_name(method, 120, 0.3) == f"{name}_120min_eps0.3"
        # Its calibration is the twin's: the schedule is planned from that file.
        os.makedirs(os.path.join(str(tmp_path), "calibrate", twin), exist_ok=True)
        io_utils.write_json_atomic(os.path.join(str(tmp_path), "calibrate", twin, "metrics.json"),
                                   {"steps_done": 60, "train_seconds": 60.0})
        assert ttr.train_step(str(tmp_path), method, 30, 0.1).name == f"train_{name}_30min_eps0.1"
    assert set(ttr.DEFAULT_METHODS) | {"nfgsm_apgd", "trades_apgd", "trades5"} == set(ttr.METHODS)


def test_trades5_is_trades_with_half_the_inner_steps_travelling_as_far(tmp_path):
    """trades5 changes only TRADES' inner maximisation: 5 steps of ε/2 instead of 10 of ε/4 (the
    same 2.5 ε of travel); it calibrates its own (cheaper) step and runs only when named."""
    method, twin = ttr.METHODS["trades5"], ttr.METHODS["trades"]
    config = fmnist_cnn6.get_config(f"{method.variants},budget")
    twin_config = fmnist_cnn6.get_config(f"{twin.variants},budget")
    assert (config.adv.steps, config.adv.step_size_ratio) == (5, 0.5)
    assert config.adv.steps * config.adv.step_size_ratio == twin_config.adv.steps * twin_config.adv.step_size_ratio
    config.adv.steps, config.adv.step_size_ratio = twin_config.adv.steps, twin_config.adv.step_size_ratio
    assert config.to_dict() == twin_config.to_dict()
    assert ttr.calibration_step(str(tmp_path), method).name == "calibrate_trades5"
    assert "trades5" not in ttr.DEFAULT_METHODS
    with pytest.raises(ValueError, match="after the trades variant"):
        fmnist_cnn6.get_config("softmax,madry,trades5")


def test_a_row_reports_the_kept_epoch_and_full_training_set_passes(tmp_path):
    """The evaluation attacks robust early stopping's kept epoch, and the row says which one it was."""
    method, root = ttr.METHODS["madry"], str(tmp_path)
    name = ttr.run_name(method, 30, 0.1)
    step = ttr.evaluate_step(root, method, 30, 0.1, 0.1, 1000, models_dir=os.path.join(root, "models"))
    assert f"--workdir={os.path.join(root, name, 'best_robust')}" in step.args
    assert "--method=fgsm,pgd,apgd-ce,apgd-t,square" in step.args
    # No report yet: no row.
    assert ttr.rows(root, [method], [30], 0.1, [0.1], 1000) == []
    os.makedirs(os.path.join(root, name, "best_robust"))
    io_utils.write_json_atomic(os.path.join(root, name, "metrics.json"),
                               {"train_seconds": 1800.0, "steps_done": 230, "steps_per_epoch": 88, "epochs": 8,
                                "stopped_by_time_budget": True})
    io_utils.write_json_atomic(os.path.join(root, name, "best_robust", "best_robust.json"), {"epoch": 2})
    io_utils.write_json_atomic(step.done_when, [{
        "num_examples": 1000, "clean_accuracy": 0.8,
        "attacks": {"fgsm": {"robust_accuracy": 0.7, "robust_count": 700}, "pgd": {"robust_accuracy": 0.6, "robust_count": 600}},
        "worst_case": {"robust_accuracy": 0.55, "robust_count": 550}}])
    [row] = ttr.rows(root, [method], [30], 0.1, [0.1], 1000)
    assert row["epochs"] == round(230 * 256 / 59_000, 2)  # a subset run: passes over the training set's size
    # Of the 3 epochs started (230 steps of 88), not the 8 planned beyond the budget.
    assert (row["kept_epoch"], row["of_epochs"], row["train_minutes"]) == (2, 3, 30.0)
    low, high = row["ci95"]["worst_case"]
    assert low < 0.55 < high and high - low < 0.07  # Wilson, n = 1000
    assert "| Madry PGD-10 | 0.1 | 30 | 30 | 230 (0.13) | 1 | 2 of 3 | 0.1 | 1000 | 80.0 [77.4, 82.4] | 70.0 [67.1, 72.8] | 60.0 [" in ttr.table([row])
    assert "| **55.0 [" in ttr.table([row])
    # Kept where the budget cut epoch 3 (validated at the budget's end):
    io_utils.write_json_atomic(os.path.join(root, name, "best_robust", "best_robust.json"),
                               {"epoch": 3, "step": 230, "unfinished_epoch": True})
    [row] = ttr.rows(root, [method], [30], 0.1, [0.1], 1000)
    assert "| 3 (budget end) of 3 |" in ttr.table([row])
    # A run that finished its planned epochs before the budget did is marked.
    io_utils.write_json_atomic(os.path.join(root, name, "metrics.json"),
                               {"train_seconds": 1500.0, "steps_done": 264, "steps_per_epoch": 88, "epochs": 3,
                                "stopped_by_time_budget": False})
    [row] = ttr.rows(root, [method], [30], 0.1, [0.1], 1000)
    assert "| 30 | 25 (ran out of epochs) | 264 (0.18) |" in ttr.table([row])


def test_the_early_stopping_history_marks_the_kept_point_including_the_budget_end(tmp_path):
    workdir = str(tmp_path)
    os.makedirs(os.path.join(workdir, "best_robust"))
    io_utils.write_json_atomic(os.path.join(workdir, "metrics.json"), {
        "steps_per_epoch": 100, "steps_done": 250,
        "history": {"epoch": [1, 2], "val_clean_accuracy": [0.7, 0.8], "val_fgsm_accuracy": [0.5, 0.6],
                    "val_robust_accuracy": [0.4, 0.5]},
        "budget_end_validation": {"epoch": 3, "step": 250, "val_clean_accuracy": 0.85, "val_fgsm_accuracy": 0.65,
                                  "val_robust_accuracy": 0.55, "kept": True}})
    io_utils.write_json_atomic(os.path.join(workdir, "best_robust", "best_robust.json"),
                               {"epoch": 3, "step": 250, "unfinished_epoch": True})
    points = ttr.early_stopping_history(workdir)
    assert [(p["epoch"], p["step"], p["budget_end"], p["kept"]) for p in points] == [
        (1, 100, False, False), (2, 200, False, False), (3, 250, True, True)]
    assert "| 3 (budget end) | 250 | 85.0 | 65.0 | 55.0 | kept |" in ttr.history_table("run", points)
    assert "| FGSM | PGD-10 | kept |" in ttr.history_table("run", points)
    # A run stopped by APGD-CE says so in its history's header.
    io_utils.write_json_atomic(os.path.join(workdir, "best_robust", "best_robust.json"),
                               {"epoch": 3, "step": 250, "unfinished_epoch": True, "attack": "apgd-ce", "attack_steps": 100})
    assert "| FGSM | APGD-CE-100 | kept |" in ttr.history_table("run", ttr.early_stopping_history(workdir))
    # Kept at an epoch end: that row is marked, not the budget end's.
    io_utils.write_json_atomic(os.path.join(workdir, "best_robust", "best_robust.json"), {"epoch": 2})
    assert [p["kept"] for p in ttr.early_stopping_history(workdir)] == [False, True, False]


def test_ship_writes_a_portable_slim_copy_once_every_evaluation_is_done(tmp_path):
    """--stage=ship: the kept point as a slim copy with its early-stopping record and its reports,
    which name it by its shipped name; skipped until evaluated, never written over."""
    import shutil

    method, root, models = ttr.METHODS["madry"], str(tmp_path / "root"), str(tmp_path / "models")
    name = ttr.run_name(method, 30, 0.1)
    kept = os.path.join(root, name, "best_robust")
    shutil.copytree(os.path.join(os.path.dirname(__file__), os.pardir, "models", "fmnist_cnn6_madry"), kept,
                    ignore=shutil.ignore_patterns("reports", "SLIM_COPY"))
    io_utils.write_json_atomic(os.path.join(kept, "best_robust.json"), {"epoch": 2, "unfinished_epoch": True})
    io_utils.write_json_atomic(os.path.join(root, name, "history.json"), {"epoch": [1], "val_robust_accuracy": [0.6]})
    assert ttr.ship(root, models, [method], [30], 0.1, [0.1, 0.3], 1000) == []  # not evaluated yet
    for eps in (0.1, 0.3):
        stem = ttr._result_stem(root, name, eps, 1000)
        io_utils.write_json_atomic(stem + ".json", [{"model": {"workdir": os.path.abspath(kept)}, "eps": eps}])
        with open(stem + ".md", "w") as f:
            f.write(f"| {os.path.abspath(kept)} | white-box | {eps} |\n")
    [shipped] = ttr.ship(root, models, [method], [30], 0.1, [0.1, 0.3], 1000)
    assert os.path.basename(shipped) == "fmnist_cnn6_madry_30min_eps0.1"
    assert {"best_robust.json", "history.json", "reports", "SLIM_COPY", "checkpoints"} <= set(os.listdir(shipped))
    with open(os.path.join(shipped, "reports", f"{name}_at0.1_n1000.md")) as f:
        text = f.read()
    assert "fmnist_cnn6_madry_30min_eps0.1" in text and str(tmp_path) not in text
    assert ttr.ship(root, models, [method], [30], 0.1, [0.1, 0.3], 1000) == []  # never written over


def test_the_plot_has_a_panel_per_eps_and_the_legend_says_the_steps_each_budget_bought(tmp_path):
    def row(label, minutes, steps, eps, worst, train_eps=0.1):
        return {"label": label, "budget_minutes": minutes, "train_minutes": minutes + 0.1, "steps": steps, "eps": eps,
                "worst_case": worst, "ci95": {"worst_case": [worst - 0.03, worst + 0.03]}, "train_eps": train_eps}

    found = [row("N-FGSM", 30, 1036, 0.1, 0.741), row("N-FGSM", 60, 5020, 0.1, 0.71), row("fast AT", 30, 2355, 0.1, 0.748),
             row("N-FGSM", 30, 1036, 0.3, 0.0)]
    assert ttr.legend_label("N-FGSM", found) == "N-FGSM: 1036 steps in 30 min, 5020 steps in 60 min"
    assert ttr.legend_label("N-FGSM", found, 0.1) == "N-FGSM: 1036 steps in 30 min, 5020 steps in 60 min"
    # A method trained at two ε is two series, each legend entry naming its training ε and its own steps.
    mixed = found + [row("N-FGSM", 120, 1577, 0.3, 0.442, train_eps=0.3)]
    assert ttr.legend_label("N-FGSM", mixed, 0.3) == "N-FGSM (trained at ε 0.3): 1577 steps in 120 min"
    assert ttr.legend_label("N-FGSM", mixed, 0.1) == "N-FGSM (trained at ε 0.1): 1036 steps in 30 min, 5020 steps in 60 min"
    for rows_, name in ((found, "two.png"), (found[:3], "one.png"), (mixed, "mixed.png")):  # ε 0.1 and 0.3; ε 0.1 only
        ttr.plot(rows_, str(tmp_path / name))
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_render_shows_every_finished_evaluation_not_only_this_invocations_methods(tmp_path):
    """Running one method (``--methods=pcl_trades``) must not drop the other rows from the shared JSON."""
    root = str(tmp_path)
    assert ttr.evaluated_grid(root, 1000) == ([], [], [], [])  # no results folder yet
    os.makedirs(os.path.join(root, "results"))
    for stem in ("madry_30min_eps0.1_at0.1_n1000", "pcl_trades_30min_eps0.1_at0.1_n1000",
                 "nfgsm_60min_eps0.1_at0.3_n1000",
                 "fastat_30min_kept_clean10k",            # a side report: not a grid point
                 "trades_120min_eps0.3_at0.3_n1000",      # trained at another ε: shown too
                 "trades5_120min_eps0.3_at0.3_n1000",     # a digit in the method's name
                 "madry_30min_eps0.1_at0.1_n500"):        # another n
        io_utils.write_json_atomic(os.path.join(root, "results", stem + ".json"), [{}])
    methods, minutes, train_eps_values, eps_values = ttr.evaluated_grid(root, 1000)
    assert [m.name for m in methods] == ["madry", "nfgsm", "trades", "pcl_trades", "trades5"]  # the table's order
    assert (minutes, train_eps_values, eps_values) == ([30.0, 60.0, 120.0], [0.1, 0.3], [0.1, 0.3])


def test_a_shipped_run_is_stashed_without_weights(tmp_path):
    """Its kept weights are in models/: the stash keeps only the records the table reads."""
    root, models = str(tmp_path / "root"), str(tmp_path / "models")
    for name in ("fastat_30min_eps0.1", "trades_30min_eps0.1"):
        os.makedirs(os.path.join(root, name))
        io_utils.write_json_atomic(os.path.join(root, name, "config.json"), {})
    os.makedirs(os.path.join(models, ttr.shipped_name("fastat_30min_eps0.1")))
    assert ttr.shipped_runs(root, models) == ["fastat_30min_eps0.1"]
    assert ttr.shipped_runs(str(tmp_path / "no_root"), models) == []


def test_a_finished_run_is_stashed_with_its_kept_weights_only(tmp_path):
    """A run whose training finished (metrics.json written) is only evaluated from best_robust/
    again: the stash drops its training checkpoint; a run still training, and the calibrations, do not count."""
    root = str(tmp_path / "root")
    for name, finished in (("trades_60min_eps0.1", True), ("madry_60min_eps0.1", False),
                           (os.path.join("calibrate", "madry"), True)):
        io_utils.write_json_atomic(os.path.join(root, name, "config.json"), {})
        if finished:
            io_utils.write_json_atomic(os.path.join(root, name, "metrics.json"), {})
    assert ttr.finished_runs(root) == ["trades_60min_eps0.1"]
    assert ttr.finished_runs(str(tmp_path / "no_root")) == []


def test_a_shipped_run_stashed_without_weights_is_evaluated_from_its_slim_copy(tmp_path):
    """Its records came back from the stash, its kept weights live in models/: a new ε attacks those."""
    method, root, models = ttr.METHODS["fastat"], str(tmp_path / "root"), str(tmp_path / "models")
    name = ttr.run_name(method, 60, 0.1)
    os.makedirs(os.path.join(root, name, "best_robust"))
    shipped = os.path.join(models, ttr.shipped_name(name))
    step = ttr.evaluate_step(root, method, 60, 0.1, 0.3, 1000, models_dir=models)
    assert f"--workdir={os.path.join(root, name, 'best_robust')}" in step.args  # not shipped: its own (pcl-attack says why not)
    os.makedirs(os.path.join(shipped, "checkpoints"))
    with open(os.path.join(shipped, "checkpoints", "checkpoint"), "w", encoding="utf-8") as f:
        f.write('model_checkpoint_path: "ckpt-13"\n')
    step = ttr.evaluate_step(root, method, 60, 0.1, 0.3, 1000, models_dir=models)
    assert f"--workdir={shipped}" in step.args
    assert f"--output={os.path.join(root, 'results', name + '_at0.3_n1000')}" in step.args
    # The run's own kept weights, when present, come first.
    os.makedirs(os.path.join(root, name, "best_robust", "checkpoints"))
    with open(os.path.join(root, name, "best_robust", "checkpoints", "checkpoint"), "w", encoding="utf-8") as f:
        f.write('model_checkpoint_path: "ckpt-13"\n')
    step = ttr.evaluate_step(root, method, 60, 0.1, 0.3, 1000, models_dir=models)
    assert f"--workdir={os.path.join(root, name, 'best_robust')}" in step.args
