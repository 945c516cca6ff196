"""End to end: every config, shrunk to its `smoke` variant, through the real TFDS code path on
``tfds.testing.mock_data`` (random images of each dataset's real shape and classes); resume;
loading a trained work dir; config validation."""

import glob
import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pcl_tf import checkpointing, early_stopping, experiment, io_utils, training_setup
from pcl_tf import workdir as workdirs

CONFIG_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "configs")
CONFIG_FILES = sorted(
    p for p in glob.glob(os.path.join(CONFIG_DIR, "*.py")) if not os.path.basename(p).startswith(("common", "_"))
)


def load_config(path, variants="smoke"):
    spec = importlib.util.spec_from_file_location("cfg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variants)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=[os.path.basename(p)[:-3] for p in CONFIG_FILES])
def test_every_config_trains_end_to_end_on_mock_data(path, tmp_path):
    config = load_config(path)
    if config.model == "resnet110" and config.dataset != "cifar10":
        # CIFAR-100's and SVHN's ResNet-110 configs differ from CIFAR-10's in the dataset alone:
        # ResNet-110 itself trains in the cifar10_resnet110 case (~50 s of graph building on 2
        # cores); here the dataset's plumbing (100 classes, svhn_cropped) runs on its small
        # sibling with the same tap structure.
        config.model, config.pcl.branches = "resnet20", "stage2:256,stage3,fc256"
    config.train.num_examples = 64
    config.eval.num_examples = 32
    workdir = str(tmp_path / "run")
    with tfds.testing.mock_data(num_examples=96):
        metrics = experiment.train_and_evaluate(config, workdir, verbose=0)
    assert sorted(os.listdir(workdir)) == ["checkpoints", "config.json", "history.json", "metrics.json", "tensorboard"]
    assert metrics["test"]["num_examples"] == 32
    assert 0.0 <= metrics["test"]["softmax"] <= 1.0
    history = metrics["history"]
    assert len(history["loss"]) == config.train.epochs
    assert all(np.isfinite(v) for values in history.values() for v in values)
    branches = [b for b in config.pcl.branches.split(",") if b]
    expected_terms = {"pcl_" + b.split(":")[0] for b in branches}
    assert expected_terms <= set(history)  # every PC term is logged on its own
    assert {k[len("prototype_"):] for k in metrics["test"] if k.startswith("prototype_")} == expected_terms
    with open(os.path.join(workdir, "metrics.json")) as f:
        assert json.load(f)["test"] == metrics["test"]


def test_rerun_resumes_instead_of_retraining_and_load_trained_restores(tmp_path):
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"))
    workdir = str(tmp_path / "run")
    with tfds.testing.mock_data(num_examples=96):
        config.train.epochs = 2
        first = experiment.train_and_evaluate(config, workdir, verbose=0)
        config.train.epochs = 3  # asking for one more epoch trains exactly one more
        second = experiment.train_and_evaluate(config, workdir, verbose=0)
        third = experiment.train_and_evaluate(config, workdir, verbose=0)  # nothing left to do
        model, loaded_config = workdirs.load_trained(workdir)
        x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
        assert model.inference_model()(x).shape == (3, 10)
    assert first["resumed_from_epoch"] == 0 and len(first["history"]["loss"]) == 2
    assert second["resumed_from_epoch"] == 2 and len(second["history"]["loss"]) == 3
    assert third["resumed_from_epoch"] == 3 and third["test"] == second["test"]
    # The training budget survives resumes: seconds accumulate in the checkpoint.
    assert 0 < first["train_seconds"] < second["train_seconds"] == third["train_seconds"]
    assert loaded_config.train.epochs == 3
    assert float(model.pc_active) == 1.0  # warm-up (1 epoch) is over, carried by the checkpoint


STEPS_PER_EPOCH = 2  # the smoke config: 96 examples less 32 held out for validation, batch 32


@pytest.mark.parametrize("budget_steps", [2 * STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH], ids=["mid_epoch", "epoch_end"])
def test_time_budget_stops_at_a_step_boundary_and_a_rerun_trains_no_further(tmp_path, monkeypatch, budget_steps):
    """train.time_budget_minutes: equal-compute comparisons. The run stops mid-schedule, keeps a
    checkpoint of the step it reached, reports it, and counts only finished epochs as epochs. A
    budget that runs out on an epoch's last step finishes that epoch (its validation and history
    entry included); one that runs out mid-epoch validates the unfinished epoch once.
    With the one_cycle_time schedule the lr follows the training time, not the planned steps: the
    epoch-1 snapshot's lr is the one-cycle value at its share of the budget.

    Test double: the training clock is the step count (one second per step), so where the budget
    ends does not depend on this machine's speed (it did: a real clock made the test flaky)."""
    monkeypatch.setattr(checkpointing.StepCheckpoint, "elapsed",
                        lambda self: float(self.model.optimizer.iterations.numpy()))
    budget_seconds = float(budget_steps)
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"), "smoke")
    config.train.epochs, config.train.time_budget_minutes = 200, budget_seconds / 60
    config.train.lr_schedule, config.train.snapshot_epochs = "one_cycle_time", (1,)
    config.train.num_examples, config.train.robust_val_examples = 96, 32
    workdir = str(tmp_path / "run")
    unfinished_validations = []
    validate = early_stopping.RobustValidation.validate_unfinished_epoch

    def counting(self, epoch, step):
        unfinished_validations.append(step)
        return validate(self, epoch, step)

    monkeypatch.setattr(early_stopping.RobustValidation, "validate_unfinished_epoch", counting)
    with tfds.testing.mock_data(num_examples=128):
        first = experiment.train_and_evaluate(config, workdir, verbose=0)
        again = experiment.train_and_evaluate(config, workdir, verbose=0)
    assert first["steps_per_epoch"] == STEPS_PER_EPOCH
    assert first["stopped_by_time_budget"] and first["steps_done"] == budget_steps
    assert first["train_seconds"] == budget_seconds
    assert (again["stopped_by_time_budget"], again["steps_done"]) == (True, first["steps_done"])
    finished_epochs = budget_steps // STEPS_PER_EPOCH
    assert first["history"]["epoch"] == list(range(1, finished_epochs + 1))
    assert again["history"] == first["history"]
    robust = first["history"]["val_robust_accuracy"]
    epochs = first["history"]["epoch"]
    best = io_utils.read_json(os.path.join(workdir, "best_robust", "best_robust.json"))
    if budget_steps % STEPS_PER_EPOCH:
        # The steps after the last finished epoch are robust-validated once (not again by the rerun),
        # and the kept copy is the most robust of every epoch end and the budget's end.
        end = first["budget_end_validation"]
        assert unfinished_validations == [budget_steps] and again["budget_end_validation"] == end
        assert (end["step"], end["epoch"]) == (budget_steps, finished_epochs + 1)
        robust, epochs = robust + [end["val_robust_accuracy"]], epochs + [end["epoch"]]
        assert end["kept"] == (best.get("step") == budget_steps) == best.get("unfinished_epoch", False)
    else:  # the last epoch's own validation covers the budget's end
        assert unfinished_validations == [] and "budget_end_validation" not in first
        assert not best.get("unfinished_epoch", False)
    assert best["val_robust_accuracy"] == max(robust)
    # TensorBoard's validation curves carry it too: each epoch end, then the budget's end, once.
    curve = _scalars(os.path.join(workdir, "tensorboard", "validation"), "epoch_robust_accuracy")
    assert curve == sorted((e - 1, pytest.approx(r)) for e, r in zip(epochs, robust))
    snapshot = io_utils.read_json(os.path.join(workdir, "snapshots", "epoch_001", "metrics.json"))
    share = snapshot["train_seconds"] / budget_seconds
    assert share == pytest.approx(STEPS_PER_EPOCH / budget_steps)
    expected = config.train.lr * min(share / 0.4, (1 - share) / 0.6)
    assert snapshot["learning_rate"] == pytest.approx(max(expected, 0.0), abs=0.03 * config.train.lr)
    # The step-planned one-cycle over 200 epochs would still be near its start after one epoch.
    total = config.train.epochs * STEPS_PER_EPOCH
    assert snapshot["learning_rate"] > 2 * config.train.lr * (STEPS_PER_EPOCH / total) / 0.4


def _scalars(directory, tag):
    """(step, value) of every scalar summary ``tag`` in the event files of ``directory``, by step."""
    points = []
    for name in os.listdir(directory):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
            points += [(event.step, float(tf.make_ndarray(v.tensor))) for v in event.summary.value if v.tag == tag]
    return sorted(points)


def test_workdir_of_another_dataset_is_refused(tmp_path):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump({"dataset": "cifar10", "model": "resnet20", "pcl": {"branches": ""}}, f)
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"))
    with tfds.testing.mock_data(num_examples=8):
        with pytest.raises(workdirs.WorkdirError, match="cifar10/resnet20"):
            experiment.train_and_evaluate(config, workdir, verbose=0)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model", "resnet9000", "unknown model"),
        ("dataset", "imagenet", "unknown dataset"),
        ("pcl.branches", "fc4096", "no tap 'fc4096'"),
        ("pcl.mode", "cosine", "paper or official"),
        ("train.epochs", 0, "must be > 0"),
        ("train.lr", -1.0, "must be > 0"),
        ("pcl.push_weight", -0.5, "must be >= 0"),
        ("adv.eps_ramp_epochs", -1.0, "must be >= 0"),
        ("adv.start", "later", "joint or first_step"),
        ("train.lr_schedule", "cosine", "piecewise, one_cycle, one_cycle_time"),
        ("train.lr_schedule", "one_cycle_time", "set config.train.time_budget_minutes > 0"),  # no budget set
        ("adv.loss", "hinge", "choose ce, joint, trades"),
        ("adv.trades_beta", -1.0, "must be >= 0"),
        ("adv.start_radius_ratio", -1.0, "must be >= 0"),
        ("train.clip_global_norm", -1.0, "must be >= 0"),
        ("train.robust_val_examples", -5, "must be >= 0"),
        ("train.schedule_scale", 0.0, "schedule_scale=0.0 must be > 0"),
        ("train.lr_warmup_epochs", -1.0, "must be >= 0"),
        ("train.warmup_epochs", 2, r"warmup_epochs \(2\) must be < config.train.epochs \(2\)"),
        ("train.snapshot_epochs", (1, 3), "3 is not an epoch of this run"),
        ("train.weight_decay_mode", "l2", "choose decoupled or coupled"),
        ("pcl.push_centroid_lr_ratio", -1.0, "must be >= 0"),
        ("adv.step_size", -0.1, "must be >= 0"),
        ("train.pcl_lr", -0.01, "must be >= 0"),
        ("train.pcl_lr_decay_epochs", (1,), "set config.train.pcl_lr > 0"),
        ("train.official_pcl_lr_decay_bug", True, "set config.train.pcl_lr > 0"),
        ("norm_std", (0.2, 0.2), r"needs one value per channel \(1\)"),
        ("norm_std", (0.0,), "must be > 0"),
    ],
)
def test_bad_config_values_are_named(field, value, message):
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"))
    section, _, name = field.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(ValueError, match=message):
        training_setup.validate_config(config)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(pcl_lr_decay_epochs=(5,)), "5 is not inside the joint stage"),
        (dict(lr_decay_epochs=(3,)), "3 falls after the CE warm-up"),
        (dict(lr_schedule="one_cycle"), "set config.train.lr_schedule=piecewise"),
    ],
)
def test_bad_restarted_joint_stage_is_named(overrides, message):
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"))  # 2 epochs, 1 of them CE
    config.train.pcl_lr = 1e-4
    config.train.update(overrides)
    with pytest.raises(ValueError, match=message):
        training_setup.validate_config(config)


def test_eps_ramp_epochs_become_training_steps():
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"), "smoke,softmax,madry")
    config.adv.eps_ramp_epochs = 1.5
    assert training_setup.make_adversary(config, steps_per_epoch=10).ramp_steps == 15
    assert training_setup.make_adversary(config).ramp_steps == 0  # a model built to be evaluated


def test_load_trained_explains_a_missing_workdir(tmp_path):
    with pytest.raises(workdirs.WorkdirError, match="does not exist"):
        workdirs.load_trained(str(tmp_path / "nope"))


def test_a_softmax_run_may_be_all_warmup():
    """The warm-up >= epochs refusal is about PC terms that would never switch on."""
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"), "smoke,softmax")
    config.train.warmup_epochs = 5
    training_setup.validate_config(config)


def test_paper_cpu_is_the_papers_recipe_at_one_eighth():
    from pcl_tf import schedule

    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"), "paper_cpu")
    plan = schedule.Schedule.from_config(config.train)
    assert (plan.epochs, plan.warmup_epochs, plan.lr_decay_epochs) == (44, 6, (25.0, 31.25))
    t = config.train
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.batch_size, t.lr_decay_factor) == ("sgd", 0.1, 0.9, 1e-4, 256, 0.1)
    assert (t.clip_global_norm, t.lr_warmup_epochs) == (1.0, 0.0)  # the one addition, named in the variant
    assert load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"), "paper_cpu,advpgd").adv.start == "joint"
    assert load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"), "paper_cpu,softmax,madry").adv.start == "first_step"


def test_snapshots_are_loadable_work_dirs_and_survive_a_resume(tmp_path):
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"))
    workdir = str(tmp_path / "run")
    with tfds.testing.mock_data(num_examples=96):
        config.train.epochs = 2
        config.train.snapshot_epochs = (1, 2)
        experiment.train_and_evaluate(config, workdir, verbose=0)
        snapshots = os.path.join(workdir, "snapshots")
        assert sorted(os.listdir(snapshots)) == ["epoch_001", "epoch_002"]
        first_mtime = os.path.getmtime(os.path.join(snapshots, "epoch_001", "metrics.json"))
        config.train.epochs = 3  # resume for one more epoch: the snapshots stay as they were
        experiment.train_and_evaluate(config, workdir, verbose=0)
        assert os.path.getmtime(os.path.join(snapshots, "epoch_001", "metrics.json")) == first_mtime
        for epoch in (1, 2):
            snapshot = os.path.join(snapshots, f"epoch_{epoch:03d}")
            model, _ = workdirs.load_trained(snapshot)
            with open(os.path.join(snapshot, "metrics.json")) as f:
                metrics = json.load(f)
            assert metrics["epochs"] == epoch and 0.0 <= metrics["test"]["softmax"] <= 1.0
            assert float(model.pc_active) == (0.0 if epoch == 1 else 1.0)  # warm-up: 1 epoch


def test_a_config_written_before_adv_start_existed_reads_as_first_step(tmp_path):
    """Shipped PCL + AdvTrain models were trained with adversarial copies from step 1."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"dataset": "fashion_mnist", "model": "cnn6", "adv": {"method": "pgd"}}))
    assert workdirs.read_config(str(path)).adv.start == "first_step"
    path.write_text(json.dumps({"dataset": "fashion_mnist", "model": "cnn6", "adv": {"method": "pgd", "start": "joint"}}))
    assert workdirs.read_config(str(path)).adv.start == "joint"


def test_a_rerun_with_other_settings_is_refused_naming_the_fields_and_keeps_config_json(tmp_path):
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"))
    workdir = str(tmp_path / "run")
    with tfds.testing.mock_data(num_examples=96):
        experiment.train_and_evaluate(config, workdir, verbose=0)
        saved = open(os.path.join(workdir, "config.json")).read()
        changed = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"))
        changed.train.lr, changed.seed = 0.5, 3
        with pytest.raises(workdirs.WorkdirError, match=r"seed 0 -> 3, train.lr 0.001 -> 0.5\)"):
            experiment.train_and_evaluate(changed, workdir, verbose=0)
        assert open(os.path.join(workdir, "config.json")).read() == saved  # nothing rewritten
        more = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"))
        more.train.epochs = 3  # continuing is allowed, and recorded
        experiment.train_and_evaluate(more, workdir, verbose=0)
    assert json.load(open(os.path.join(workdir, "config.json")))["train"]["epochs"] == 3


def test_trades_with_adversarial_images_only_is_refused():
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"), "smoke,softmax,trades")
    training_setup.validate_config(config)
    config.adv.include_clean = False
    with pytest.raises(training_setup.ConfigError, match="include_clean=True"):
        training_setup.validate_config(config)


def test_robust_early_stopping_logs_every_epoch_and_keeps_the_most_robust(tmp_path):
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"), "smoke,softmax,madry,nfgsm")
    config.train.epochs, config.train.num_examples, config.train.robust_val_examples = 3, 96, 32
    workdir = str(tmp_path / "run")
    with tfds.testing.mock_data(num_examples=128):
        metrics = experiment.train_and_evaluate(config, workdir, verbose=0)
        robust = metrics["history"]["val_robust_accuracy"]
        clean = metrics["history"]["val_clean_accuracy"]
        fgsm = metrics["history"]["val_fgsm_accuracy"]
        assert len(robust) == len(clean) == len(fgsm) == 3
        assert all(0 <= r <= c <= 1 and 0 <= f <= c for r, f, c in zip(robust, fgsm, clean))
        assert metrics["steps_per_epoch"] == 2  # 96 - 32 held out = 64 training images, batch 32
        with open(os.path.join(workdir, "best_robust", "best_robust.json")) as f:
            best = json.load(f)
        assert best["epoch"] == 1 + robust.index(max(robust)) and best["val_robust_accuracy"] == max(robust)
        assert best["eps"] == 0.3  # madry's fixed ε
        assert (best["attack"], best["attack_steps"]) == ("pgd", 10)  # Rice et al.'s PGD-10 unless configured
        model, _ = workdirs.load_trained(os.path.join(workdir, "best_robust"))
        assert model.inference_model()(np.zeros((1, 28, 28, 1), np.float32)).shape == (1, 10)


def test_robust_validation_must_leave_training_images():
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"), "smoke")
    config.train.robust_val_examples = 128
    with pytest.raises(training_setup.ConfigError, match="leaves no training images"):
        training_setup.validate_config(config)


def test_an_unknown_robust_validation_attack_is_refused_naming_the_choices():
    config = load_config(os.path.join(CONFIG_DIR, "fmnist_cnn6.py"), "smoke")
    config.train.robust_val_attack = "apgd"
    with pytest.raises(training_setup.ConfigError, match=r"robust_val_attack='apgd'; choose pgd or apgd-ce"):
        training_setup.validate_config(config)
    config.train.robust_val_attack, config.train.robust_val_steps = "apgd-ce", -1
    with pytest.raises(training_setup.ConfigError, match="robust_val_steps=-1 must be >= 0"):
        training_setup.validate_config(config)
