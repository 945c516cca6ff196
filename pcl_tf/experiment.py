"""A training run from a config: build, train with resume, evaluate, write the work dir.

A work dir holds everything a later command needs::

    config.json       the resolved config (what `pcl-attack` and `pcl-export` rebuild from)
    checkpoints/      tf.train checkpoints: network, centroids, both optimizers, epoch
    metrics.json      training history and clean test accuracy (softmax and Eq. 6), when training ends
    history.json      the history so far, written as each epoch ends (kept across interruptions)
    tensorboard/      every loss term per epoch
    snapshots/        loadable copies of the model at config.train.snapshot_epochs (if any)

Running the same command again resumes from the last checkpoint.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, Optional, Tuple

import keras
import ml_collections
import tensorflow as tf
from absl import logging

from pcl_tf import (adversarial, checkpointing, custom_loop, data, distribute, early_stopping, evaluation, io_utils, models,
                    report, schedule, training)
from pcl_tf import history as run_history

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
SNAPSHOT_DIR = "snapshots"  # <workdir>/snapshots/epoch_<E>/: loadable copies kept at train.snapshot_epochs
BEST_ROBUST_DIR = "best_robust"  # <workdir>/best_robust/: the epoch most robust on held-out data


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field and a valid choice."""


class WorkdirError(ValueError):
    """A work dir that is missing, unreadable, or holds a different run."""


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Rejects impossible values before anything is built or written."""
    try:
        data.info(config.dataset)
    except data.DatasetError as e:
        raise ConfigError(str(e)) from None
    if config.model not in models.available():
        raise ConfigError(f"unknown model {config.model!r}; choose one of {', '.join(models.available())}")
    if config.pcl.mode not in ("paper", "official"):
        raise ConfigError(f"config.pcl.mode={config.pcl.mode!r}; choose paper or official")
    if config.mixed_precision not in models.PRECISION_POLICIES:
        raise ConfigError(f"config.mixed_precision={config.mixed_precision!r}; choose "
                          f"{', '.join(models.PRECISION_POLICIES)}")
    if config.pcl.centroid_init not in ("class_means", "normal"):
        raise ConfigError(f"config.pcl.centroid_init={config.pcl.centroid_init!r}; choose class_means or normal")
    if config.adv.method not in adversarial.METHODS:
        raise ConfigError(f"config.adv.method={config.adv.method!r}; choose one of {', '.join(adversarial.METHODS)}")
    if config.adv.start not in training.ADVERSARY_STARTS:
        raise ConfigError(f"config.adv.start={config.adv.start!r}; choose {' or '.join(training.ADVERSARY_STARTS)}")
    if config.adv.loss not in training.ATTACK_LOSSES:
        raise ConfigError(f"config.adv.loss={config.adv.loss!r}; choose {', '.join(training.ATTACK_LOSSES)}")
    if config.adv.loss == "trades" and not config.adv.include_clean:
        raise ConfigError("config.adv.loss=trades compares each clean image with its adversarial copy: "
                          "set config.adv.include_clean=True (drop the madry variant)")
    if config.adv.method != "none":
        try:
            make_adversary(config)
        except ValueError as e:
            raise ConfigError(f"config.adv: {e}") from None
    if config.train.lr_schedule not in ("piecewise", "one_cycle"):
        raise ConfigError(f"config.train.lr_schedule={config.train.lr_schedule!r}; choose piecewise or one_cycle")
    if config.train.optimizer not in ("sgd", "adam"):
        raise ConfigError(f"config.train.optimizer={config.train.optimizer!r}; choose sgd or adam")
    if config.train.weight_decay_mode not in training.WEIGHT_DECAY_MODES:
        raise ConfigError(f"config.train.weight_decay_mode={config.train.weight_decay_mode!r}; choose "
                          f"{' or '.join(training.WEIGHT_DECAY_MODES)}")
    _validate_normalization(config)
    positive = {
        "train.batch_size": config.train.batch_size,
        "train.epochs": config.train.epochs,
        "train.lr": config.train.lr,
        "eval.batch_size": config.eval.batch_size,
        "pcl.centroid_lr": config.pcl.centroid_lr,
        "train.checkpoint_every_epochs": config.train.checkpoint_every_epochs,
        "train.schedule_scale": config.train.schedule_scale,
    }
    for field, value in positive.items():
        if not value > 0:
            raise ConfigError(f"config.{field}={value} must be > 0")
    non_negative = {
        "train.warmup_epochs": config.train.warmup_epochs,
        "train.weight_decay": config.train.weight_decay,
        "train.num_examples": config.train.num_examples,
        "eval.num_examples": config.eval.num_examples,
        "train.checkpoint_every_steps": config.train.checkpoint_every_steps,
        "pcl.pull_weight": config.pcl.pull_weight,
        "pcl.push_weight": config.pcl.push_weight,
        "pcl.push_margin": config.pcl.push_margin,
        "adv.eps_ramp_epochs": config.adv.eps_ramp_epochs,
        "train.lr_warmup_epochs": config.train.lr_warmup_epochs,
        "train.clip_global_norm": config.train.clip_global_norm,
        "train.robust_val_examples": config.train.robust_val_examples,
        "train.robust_val_eps": config.train.robust_val_eps,
        "train.time_budget_minutes": config.train.time_budget_minutes,
        "adv.trades_beta": config.adv.trades_beta,
        "adv.start_radius_ratio": config.adv.start_radius_ratio,
        "adv.step_size": config.adv.step_size,
        "pcl.push_centroid_lr_ratio": config.pcl.push_centroid_lr_ratio,
        "train.pcl_lr": config.train.pcl_lr,
    }
    for field, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"config.{field}={value} must be >= 0")
    sizes = {"train.num_examples": data.info(config.dataset).train_examples,
             "eval.num_examples": data.info(config.dataset).test_examples}
    for field, size in sizes.items():
        value = config[field.split(".")[0]][field.split(".")[1]]
        if size and value > size:
            raise ConfigError(f"config.{field}={value} is more than the {size} images of {config.dataset}'s "
                              f"{'training' if field.startswith('train') else 'test'} split; give at most {size} (0: all)")
    if not 0 <= config.train.momentum < 1:
        raise ConfigError(f"config.train.momentum={config.train.momentum} must be in [0, 1) (0.9 in the paper)")
    _check_optimizers_build(config)
    plan = schedule.Schedule.from_config(config.train)
    if config.pcl.branches and plan.warmup_epochs >= plan.epochs:
        raise ConfigError(
            f"config.train.warmup_epochs ({plan.warmup_epochs}) must be < config.train.epochs ({plan.epochs}) "
            "for a PCL model: the PC terms switch on only after the CE warm-up, so this run would train "
            "cross-entropy alone. Lower the warm-up, raise the epochs, or use the softmax variant"
        )
    _validate_joint_stage_lr(config, plan)
    used = _used_train_examples(config)
    if config.train.robust_val_examples and config.train.robust_val_examples >= used:
        raise ConfigError(f"config.train.robust_val_examples={config.train.robust_val_examples} leaves no training "
                          f"images (the run uses {used}); hold out fewer")
    for epoch in config.train.snapshot_epochs:
        if not 1 <= epoch <= plan.epochs:
            raise ConfigError(f"config.train.snapshot_epochs: {epoch} is not an epoch of this run (1 to {plan.epochs})")
    info = data.info(config.dataset)
    try:
        branches = models.parse_branches(config.pcl.branches)
    except ValueError as e:
        raise ConfigError(f"config.pcl.branches={config.pcl.branches!r}: {e}") from None
    taps = models.tap_names(config.model, info.image_shape, info.num_classes)
    for branch in branches:
        if branch.tap not in taps:
            raise ConfigError(
                f"config.pcl.branches: model {config.model!r} has no tap {branch.tap!r}; "
                f"its taps are {', '.join(taps)}"
            )


def _validate_normalization(config) -> None:
    channels = data.info(config.dataset).image_shape[-1]
    for field in ("norm_mean", "norm_std"):
        values = tuple(config[field])
        if values and len(values) not in (1, channels):
            raise ConfigError(f"config.{field}={values} needs one value per channel ({channels}) or a single value, "
                              "or () for the dataset's own")
    if any(not v > 0 for v in config.norm_std):
        raise ConfigError(f"config.norm_std={tuple(config.norm_std)} must be > 0")


def _validate_joint_stage_lr(config, plan: schedule.Schedule) -> None:
    """A restarted joint stage (train.pcl_lr > 0): piecewise, CE decays inside the warm-up, joint
    decays inside the joint stage."""
    if not config.train.pcl_lr:
        for field in ("pcl_lr_decay_epochs", "official_pcl_lr_decay_bug"):
            if config.train[field]:
                raise ConfigError(f"config.train.{field} applies to a restarted joint stage: set config.train.pcl_lr > 0")
        return
    if config.train.lr_schedule != "piecewise":
        raise ConfigError("config.train.pcl_lr > 0 restarts the piecewise schedule at the joint stage: "
                          "set config.train.lr_schedule=piecewise")
    late = [e for e in plan.lr_decay_epochs if e > plan.warmup_epochs]
    if late:
        raise ConfigError(f"config.train.lr_decay_epochs: {late[0]:g} falls after the CE warm-up "
                          f"({plan.warmup_epochs} epochs); with config.train.pcl_lr the joint stage's decays are "
                          "config.train.pcl_lr_decay_epochs")
    joint_epochs = plan.epochs - plan.warmup_epochs
    for epoch in plan.pcl_lr_decay_epochs:
        if not 0 < epoch < joint_epochs:
            raise ConfigError(f"config.train.pcl_lr_decay_epochs: {epoch:g} is not inside the joint stage "
                              f"(0 to {joint_epochs} epochs after the warm-up)")


def build_model(config: ml_collections.ConfigDict, steps_per_epoch: int = 0) -> training.PCLModel:
    """The (uncompiled) PCLModel a config describes."""
    info = data.info(config.dataset)
    network = models.build_network(
        config.model,
        input_shape=info.image_shape,
        num_classes=info.num_classes,
        branches=config.pcl.branches,
        mean=normalization(config)[0],
        std=normalization(config)[1],
        branch_ce=config.pcl.branch_ce,
        precision=config.mixed_precision,
    )
    return training.PCLModel(
        network,
        info.num_classes,
        pc_mode=config.pcl.mode,
        pull_weight=config.pcl.pull_weight,
        push_weight=config.pcl.push_weight,
        push_margin=config.pcl.push_margin or None,
        branch_ce_weight=config.pcl.branch_ce_weight,
        adversary=make_adversary(config, steps_per_epoch),
        attack_loss=config.adv.loss,
        adversary_start=config.adv.start,
        trades_beta=config.adv.trades_beta,
        push_centroid_lr_ratio=config.pcl.push_centroid_lr_ratio,
    )


def normalization(config) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """The per-channel ``(mean, std)`` the model's first layer normalises with: ``norm_mean`` /
    ``norm_std`` where a config sets them (the released code's CIFAR-10 std differs from the
    dataset's), else the dataset's published statistics. ``config`` may be a ConfigDict or the
    dict of a config.json (a work dir written before the fields existed gets the dataset's)."""
    info = data.info(config.get("dataset"))
    mean, std = config.get("norm_mean") or info.mean, config.get("norm_std") or info.std
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def make_adversary(config, steps_per_epoch: int = 0) -> Optional[adversarial.AdversarialAugmentation]:
    """The per-batch adversarial augmentation a config asks for, or None.

    ``steps_per_epoch`` turns ``config.adv.eps_ramp_epochs`` into steps (0: a model built only
    to be evaluated or checked, whose ramp does not matter)."""
    if config.adv.method == "none":
        return None
    return adversarial.AdversarialAugmentation(
        method=config.adv.method,
        eps_min=config.adv.eps_min,
        eps_max=config.adv.eps_max,
        steps=config.adv.steps,
        step_size_ratio=config.adv.step_size_ratio,
        random_start=config.adv.random_start,
        include_clean=config.adv.include_clean,
        ramp_steps=round(config.adv.eps_ramp_epochs * steps_per_epoch),
        start_radius_ratio=config.adv.start_radius_ratio,
        project=config.adv.project,
        step_size=config.adv.step_size,
    )


def compile_model(model: training.PCLModel, config, steps_per_epoch: int) -> None:
    learning_rate = schedule.Schedule.from_config(config.train).learning_rate(
        config.train.lr, steps_per_epoch, config.train.lr_decay_factor
    )
    optimizer = training.make_optimizer(config.train.optimizer, learning_rate, config.train.momentum,
                                        config.train.weight_decay, config.train.clip_global_norm,
                                        weight_decay_mode=config.train.weight_decay_mode)
    if config.mixed_precision == "mixed_float16":
        # float16 gradients underflow without it; bfloat16 has float32's range and needs none.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    centroid_lr = schedule.Schedule.from_config(config.train).centroid_learning_rate(
        config.pcl.centroid_lr, steps_per_epoch, config.train.lr_decay_factor)
    if not isinstance(centroid_lr, float):  # Keras' get() takes a serialised schedule, not an object
        centroid_lr = keras.optimizers.schedules.serialize(centroid_lr)
    model.compile(
        optimizer=optimizer,
        centroid_optimizer=keras.optimizers.get(
            {"class_name": config.pcl.centroid_optimizer, "config": {"learning_rate": centroid_lr}}
        ),
        jit_compile=config.jit_compile,
    )


def _write_config(workdir: str, config) -> None:
    """Creates the work dir and writes config.json when it is new or changed (only what
    :func:`check_workdir_matches` lets change, e.g. more epochs)."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"cannot create the work dir {workdir}: {e.strerror} ({e.filename}); "
                           "choose another --workdir") from None
    config_path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(config_path) or io_utils.read_json(config_path) != json.loads(json.dumps(config.to_dict())):
        io_utils.write_json_atomic(config_path, config.to_dict())


def _check_optimizers_build(config) -> None:
    """Builds both optimizers once, so that a value Keras rejects is named by its config field
    before anything is written (Keras' own message names its argument, not the field)."""
    fields = (f"config.train.optimizer={config.train.optimizer!r}, lr={config.train.lr}, "
              f"momentum={config.train.momentum}, weight_decay={config.train.weight_decay}, "
              f"clip_global_norm={config.train.clip_global_norm}")
    try:
        training.make_optimizer(config.train.optimizer, config.train.lr, config.train.momentum,
                                config.train.weight_decay, config.train.clip_global_norm)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{fields}: {e}") from None
    try:
        keras.optimizers.get({"class_name": config.pcl.centroid_optimizer, "config": {"learning_rate": config.pcl.centroid_lr}})
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.pcl.centroid_optimizer={config.pcl.centroid_optimizer!r}, "
                          f"centroid_lr={config.pcl.centroid_lr}: {e}") from None


def _train_data(config, seed: int) -> tf.data.Dataset:
    """One epoch of training batches, shuffled (and augmented where the dataset has it) by ``seed``:
    the first ``train.num_examples`` images of the split (all: 0), less the last
    ``train.robust_val_examples`` of them, which robust early stopping holds out."""
    used = _used_train_examples(config)
    return data.load(
        config.dataset,
        "train",
        batch_size=config.train.batch_size,
        data_dir=config.data_dir or None,
        shuffle=True,
        augment=True,
        seed=seed,
        num_examples=(used - config.train.robust_val_examples) if config.train.robust_val_examples
        else (config.train.num_examples or None),
        num_examples_name="config.train.num_examples",
    )


def _check_directory_path(workdir: str) -> None:
    """Refuses a work dir that is a file, or lies under a file or an unwritable directory."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"cannot create the work dir {workdir}: it is a file; choose another --workdir")
    blocked = io_utils.blocking_ancestor(workdir)
    if blocked:
        raise WorkdirError(f"cannot create the work dir {workdir}: {blocked} is not a writable directory; "
                           "choose another --workdir")


def _used_train_examples(config) -> int:
    """How many images of the training split a run reads: ``train.num_examples``, or all of them."""
    return config.train.num_examples or data.info(config.dataset).train_examples


def _robust_validation_data(config) -> tf.data.Dataset:
    """The held-out slice of robust early stopping: the last ``train.robust_val_examples`` of the
    training images a run uses, never trained on."""
    used = _used_train_examples(config)
    return data.load(config.dataset, "train", batch_size=config.eval.batch_size, data_dir=config.data_dir or None,
                     skip_examples=used - config.train.robust_val_examples,
                     num_examples=config.train.robust_val_examples, num_examples_name="config.train.robust_val_examples")


def _robust_validation_eps(config) -> float:
    """``train.robust_val_eps``, or the largest ε adversarial training uses, or the paper's ε."""
    if config.train.robust_val_eps:
        return float(config.train.robust_val_eps)
    if config.adv.method != "none":
        return float(config.adv.eps_max)
    from pcl_tf.attacks import registry

    return registry.paper_eps(config.dataset)


def check_workdir_matches(workdir: str, config) -> None:
    """Refuses to resume a work dir that was made for another dataset or model."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    previous = io_utils.read_json(path)
    for field in ("dataset", "model"):
        if previous.get(field) != config[field]:
            raise WorkdirError(
                f"work dir {workdir} holds a {previous.get('dataset')}/{previous.get('model')} run, "
                f"not {config.dataset}/{config.model}; choose another --workdir"
            )
    if previous.get("pcl", {}).get("branches") != config.pcl.branches:
        raise WorkdirError(
            f"work dir {workdir} was trained with pcl.branches={previous['pcl']['branches']!r}, "
            f"not {config.pcl.branches!r}; choose another --workdir"
        )
    changed = config_differences(read_config(path), config)
    if changed:
        shown = ", ".join(f"{field} {old!r} -> {new!r}" for field, old, new in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise WorkdirError(
            f"work dir {workdir} holds a run with other settings ({shown}{more}); a rerun may only change "
            f"{', '.join(RESUMABLE_FIELDS)} (to continue training). Use the saved settings or another --workdir"
        )


# Fields a rerun of a work dir may change: how long to train (train.epochs or
# train.time_budget_minutes; continuing a run), where the data lives, and how the clean test
# accuracy is computed. Anything else would make the checkpoints a mix of two runs.
RESUMABLE_FIELDS = ("train.epochs", "train.time_budget_minutes", "data_dir", "eval.batch_size", "eval.num_examples")


def config_differences(saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict):
    """``(field, saved value, new value)`` for every field that differs, less RESUMABLE_FIELDS."""

    def flat(c, prefix=""):
        out = {}
        for key, value in c.items():
            if isinstance(value, ml_collections.ConfigDict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[prefix + key] = tuple(value) if isinstance(value, list) else value
        return out

    old, new = flat(saved), flat(config)
    return [(field, old.get(field), new.get(field)) for field in sorted(set(old) | set(new))
            if field not in RESUMABLE_FIELDS and old.get(field) != new.get(field)]


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    verbose="auto",
    strategy: Optional[tf.distribute.Strategy] = None,
    announce: Callable[[str], None] = logging.info,
) -> Dict:
    """Trains (resuming from ``workdir`` when it holds checkpoints), evaluates, writes metrics.

    ``announce`` receives one line once every check has passed and the checkpoint (if any) is
    restored: "training DIR: <schedule>" or "resuming DIR from step N: <schedule>", the step
    being the one actually restored. Nothing is written to ``workdir`` before that point, so a
    run refused for its config, data or work dir leaves no trace.

    ``strategy`` (default: TensorFlow's default strategy) is the ``tf.distribute`` strategy
    whose scope every variable is created in; ``config.train.batch_size`` is the global batch.
    With more than one replica training runs :func:`pcl_tf.custom_loop.fit` instead of Keras'
    ``fit``; under multi-worker only the chief (:func:`pcl_tf.distribute.is_chief`) writes.
    Returns the metrics dict also written to ``<workdir>/metrics.json``.
    """
    strategy = strategy or tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)  # under multi_worker only the chief writes the work dir
    validate_config(config)
    if is_slim_copy(workdir):
        raise WorkdirError(f"{workdir} is a slim copy (weights without optimizer state, like the models shipped in "
                           "models/): it evaluates and exports but does not train; give pcl-train another --workdir")
    plan = schedule.Schedule.from_config(config.train)
    data_dir = config.data_dir or None
    check_workdir_matches(workdir, config)
    _check_directory_path(workdir)  # before the data: a bad --workdir is found in a second
    data.ensure_prepared(config.dataset, data_dir)  # fail fast, before anything is written

    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    info = data.info(config.dataset)
    train_ds = _train_data(config, seed=config.seed)
    test_ds = data.load(
        config.dataset,
        "test",
        batch_size=config.eval.batch_size,
        data_dir=data_dir,
        num_examples=config.eval.num_examples or None,
        num_examples_name="config.eval.num_examples",
    )
    steps_per_epoch = int(train_ds.cardinality())
    if steps_per_epoch <= 0:
        raise ConfigError("the training set is empty or of unknown size; check config.train.num_examples")

    with strategy.scope():
        model = build_model(config, steps_per_epoch)
        compile_model(model, config, steps_per_epoch)
        state = checkpointing.RunState.create()
    manager = checkpointing.make_manager(model, state, os.path.join(workdir, CHECKPOINT_DIR))
    checkpointing.restore_latest(manager, model)
    if not chief:
        # Every worker takes part in saving (its variables may need the collectives) but only
        # the chief's copy is kept: the others write to a scratch directory, removed at exit.
        scratch = tempfile.mkdtemp(prefix="pcl_tf_worker_")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        manager = checkpointing.make_manager(model, state, scratch)
    if int(state.step.numpy()) == 0 and int(state.epoch.numpy()) > 0:  # checkpoints that counted epochs only
        state.step.assign(int(state.epoch.numpy()) * steps_per_epoch)
    done_steps = resumed_from_step = int(state.step.numpy())
    if chief:
        _write_config(workdir, config)
    announce(f"resuming {workdir} from step {done_steps}: {plan.describe()}" if done_steps
             else f"training {workdir}: {plan.describe()}")
    initial_epoch, step_in_epoch = divmod(done_steps, steps_per_epoch)

    start = time.time()
    step_checkpoint = checkpointing.StepCheckpoint(manager, state, config.train.checkpoint_every_steps,
                                                   config.train.checkpoint_every_epochs, plan.epochs)
    callbacks = [
        training.PCLSchedule(
            plan.warmup_epochs,
            # Its own pipeline (another seed): iterating the training pipeline here would
            # advance its shuffling and make a resumed run see other batches than a whole one.
            init_dataset=_train_data(config, seed=config.seed + 1) if config.pcl.centroid_init == "class_means" else None,
            reset_optimizer=config.train.reset_optimizer_at_pcl_start,
        ),
        training.NonFiniteGuard(steps_per_epoch),  # before the checkpoint: a diverged step is never saved
        step_checkpoint,
    ]

    def write_copy_files(destination, epoch):
        """config.json and metrics.json of a copy of the model kept at the end of ``epoch``."""
        io_utils.write_json_atomic(os.path.join(destination, CONFIG_FILE), config.to_dict())
        io_utils.write_json_atomic(os.path.join(destination, METRICS_FILE), {
            "dataset": info.name, "model": config.model, "pcl_branches": config.pcl.branches,
            "epochs": epoch, "run_epochs": plan.epochs, "warmup_epochs": plan.warmup_epochs,
            "schedule": plan.describe(), "steps_per_epoch": steps_per_epoch,
            "learning_rate": float(keras.ops.convert_to_tensor(model.optimizer.learning_rate)),
            "train_seconds": round(float(state.seconds.numpy()), 1),
            "test": evaluation.clean_accuracy(model, test_ds),
        })

    if chief and config.train.snapshot_epochs:
        callbacks.append(checkpointing.EpochSnapshots(
            os.path.join(workdir, SNAPSHOT_DIR), config.train.snapshot_epochs,
            lambda: model.checkpoint_items(optimizers=False), state, write_copy_files))
    if config.train.robust_val_examples:
        # Rice et al.'s robust early stopping: PGD accuracy on the held-out slice every epoch,
        # the most robust epoch kept in <workdir>/best_robust/.
        callbacks.append(early_stopping.RobustValidation(
            _robust_validation_data(config), _robust_validation_eps(config),
            os.path.join(workdir if chief else scratch, BEST_ROBUST_DIR),
            lambda: model.checkpoint_items(optimizers=False), write_copy_files))
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard"), write_graph=False))
        # Last: it records the logs every callback before it added to (robust validation's).
        epoch_history = run_history.EpochHistory(workdir, run_history.read(workdir, _previous_metrics(workdir).get("history")))
        callbacks.append(epoch_history)
    # The data order is a function of the global step alone: a fresh seeded pipeline, repeated,
    # then skipped to the step the run resumes from. A run killed mid-epoch and resumed sees exactly
    # the batches an uninterrupted run would have.
    segments = []
    if initial_epoch < plan.epochs and step_in_epoch:
        segments.append((initial_epoch, initial_epoch + 1, steps_per_epoch - step_in_epoch, done_steps))
        initial_epoch, done_steps = initial_epoch + 1, (initial_epoch + 1) * steps_per_epoch
    if initial_epoch < plan.epochs:
        segments.append((initial_epoch, plan.epochs, steps_per_epoch, done_steps))
    # Ctrl-C: Python's default KeyboardInterrupt can be lost when SIGINT arrives while TensorFlow
    # runs a step (seen: the run went on). A handler that only sets a flag, checked after every
    # step, stops training at the next step boundary instead.
    stop = training.StopOnInterrupt()
    callbacks.insert(callbacks.index(step_checkpoint) + 1, stop)
    budget_seconds = 60.0 * config.train.time_budget_minutes
    budget_reached = bool(budget_seconds) and float(state.seconds.numpy()) >= budget_seconds
    if budget_seconds:
        callbacks.insert(callbacks.index(step_checkpoint) + 1,
                         training.StopAtTimeBudget(budget_seconds, step_checkpoint.elapsed))
    history: Dict[str, list] = {}
    try:
        with stop.catching_sigint():
            if not budget_reached:  # a rerun of a run that used its budget trains no further
                history = _fit_segments(model, config, strategy, train_ds, segments, callbacks, verbose)
    except training.TimeBudgetReached:
        budget_reached = True
        state.step.assign(tf.cast(model.optimizer.iterations, tf.int64))
        if chief:
            step_checkpoint.save_now()
    except KeyboardInterrupt:
        # The optimizer's step count is the truth (the interrupted batch may have been applied
        # before its callback ran); a resumed run skips exactly the batches already trained on.
        state.step.assign(tf.cast(model.optimizer.iterations, tf.int64))
        path = step_checkpoint.save_now() if chief else None
        raise TrainingInterrupted(f"interrupted at step {int(state.step.numpy())}: "
                                  + (f"checkpoint written to {path}" if path else "no checkpoint written (not the chief)")
                                  + "; run the same command to resume") from None
    except training.TrainingDivergedError as e:
        raise training.TrainingDivergedError(f"{e}. On disk: {_checkpoint_on_disk(manager)}") from None
    train_seconds = time.time() - start
    if not chief:
        shutil.rmtree(scratch, ignore_errors=True)  # now, not only at exit

    test = evaluation.clean_accuracy(model, test_ds)
    previous = _previous_metrics(workdir)
    metrics = {
        "dataset": info.name,
        "model": config.model,
        "pcl_branches": config.pcl.branches,
        "pcl_mode": config.pcl.mode if config.pcl.branches else None,
        "epochs": plan.epochs,
        "warmup_epochs": plan.warmup_epochs,
        "schedule": plan.describe(),
        "resumed_from_step": int(resumed_from_step),
        "resumed_from_epoch": int(resumed_from_step) // steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "replicas": strategy.num_replicas_in_sync,
        "train_seconds": round(float(state.seconds.numpy()), 1),  # all sessions, from the checkpoint
        "train_examples_per_second": (
            round((int(state.step.numpy()) - resumed_from_step) * config.train.batch_size / train_seconds, 1)
            if int(state.step.numpy()) > resumed_from_step
            else previous.get("train_examples_per_second")
        ),
        "steps_done": int(state.step.numpy()),
        "stopped_by_time_budget": budget_reached,
        "history": epoch_history.history if chief else history,
        "test": test,
    }
    if chief:
        io_utils.write_json_atomic(os.path.join(workdir, METRICS_FILE), metrics)
    return metrics



def _fit_segments(model, config, strategy, train_ds, segments, callbacks, verbose) -> Dict[str, list]:
    """Runs Keras' fit (or pcl_tf's loop under distribution) over each resume segment."""
    history: Dict[str, list] = {}
    for first_epoch, end_epoch, steps, skip in segments:
        # A new pipeline per segment: a second iterator over the same dataset object would
        # continue its reshuffling sequence instead of starting it over.
        segment_data = (train_ds if skip == 0 else _train_data(config, seed=config.seed)).repeat().skip(skip)
        if strategy.num_replicas_in_sync > 1 or distribute.is_multi_worker(strategy):  # see pcl_tf.custom_loop
            segment_history = custom_loop.fit(model, strategy, segment_data, epochs=end_epoch, initial_epoch=first_epoch,
                                              steps_per_epoch=steps, callbacks=callbacks)
        else:
            segment_history = model.fit(
                segment_data,
                epochs=end_epoch,
                initial_epoch=first_epoch,
                steps_per_epoch=steps,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,  # data.load already shuffles (seeded, every epoch)
            ).history
        history = _merge_history(history, {k: [float(v) for v in values] for k, values in segment_history.items()})
    return history


def _checkpoint_on_disk(manager) -> str:
    """What a rerun would resume from, said plainly."""
    if manager.latest_checkpoint:
        return (f"the checkpoint of step {manager.latest_checkpoint.rsplit('-', 1)[-1]} ({manager.latest_checkpoint}); "
                "a rerun resumes from it with the same settings, so change them first (or move checkpoints/ aside "
                "to start over)")
    return "no checkpoint was written yet; a rerun starts from scratch"


class TrainingInterrupted(RuntimeError):
    """Ctrl-C during training: the message says which checkpoint was written."""

def _previous_metrics(workdir: str) -> Dict:
    path = os.path.join(workdir, METRICS_FILE)
    return io_utils.read_json(path) if os.path.exists(path) else {}


def _merge_history(previous: Dict, new: Dict) -> Dict:
    merged = {k: list(v) for k, v in previous.items()}
    for key, values in new.items():
        merged.setdefault(key, []).extend(values)
    return merged


def load_trained(workdir: str, allow_older_checkpoint: bool = False) -> Tuple[training.PCLModel, ml_collections.ConfigDict]:
    """Rebuilds the model of a work dir from its config.json and restores its newest checkpoint.

    If that checkpoint cannot be read, :class:`pcl_tf.checkpointing.CheckpointError` names the
    older one, which is used only with ``allow_older_checkpoint``. The model's ``restored_checkpoint``
    attribute records what was restored (``{"name": "ckpt-1410", "step": 1410, "newest": True}``)
    for reports and exports."""
    config_path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isdir(workdir):
        raise WorkdirError(f"work dir {workdir} does not exist; train one with pcl-train --workdir={workdir}")
    if not os.path.exists(config_path):
        raise WorkdirError(f"{workdir} has no {CONFIG_FILE}; is it a pcl-train work dir?")
    config = read_config(config_path)
    model = build_model(config)
    manager = checkpointing.make_manager(model, checkpointing.RunState.create(), os.path.join(workdir, CHECKPOINT_DIR))
    path = checkpointing.restore_latest(manager, model, allow_older=allow_older_checkpoint)
    if path is None:
        raise WorkdirError(f"{workdir} has no checkpoint yet; run pcl-train --workdir={workdir} first")
    name = os.path.basename(path)
    model.restored_checkpoint = {"name": name, "step": int(name.rsplit("-", 1)[-1]) if name.rsplit("-", 1)[-1].isdigit() else None,
                        "newest": path == manager.latest_checkpoint}
    if not model.restored_checkpoint["newest"]:
        logging.warning("%s: using the older checkpoint %s, not the newest %s", workdir, name,
                        os.path.basename(manager.latest_checkpoint))
    return model, config


SLIM_COPY_MARKER = "SLIM_COPY"


def is_slim_copy(workdir: str) -> bool:
    """Whether ``workdir`` is a slim copy (:func:`slim_copy`; every model shipped in models/):
    weights to evaluate and export, which no pcl_tf command writes into."""
    return os.path.exists(os.path.join(workdir, SLIM_COPY_MARKER))


def slim_copy(workdir: str, destination: str) -> str:
    """Writes a copy of a trained work dir that only evaluates and exports: config.json,
    metrics.json, the finished reports and one checkpoint of the weights and prototypes (no
    optimizer state, no TensorBoard logs: a few MB for CNN-6 instead of ~30), its reports naming
    models by name rather than by this machine's paths. ``pcl-attack`` and
    ``pcl-export`` take it like the original; resuming training from it is refused (no optimizer
    state). Written to a temporary sibling and renamed; an existing ``destination`` is refused.
    Returns the destination's absolute path."""
    destination = os.path.abspath(destination)
    if os.path.exists(destination):
        raise WorkdirError(f"{destination} already exists; slim copies are never written over, choose another path")
    model, _ = load_trained(workdir)
    state = checkpointing.RunState.create()
    checkpointing.restore_latest(checkpointing.make_manager(model, state, os.path.join(workdir, CHECKPOINT_DIR)), model)
    parent = os.path.dirname(destination)
    try:
        os.makedirs(parent, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix="." + os.path.basename(destination) + ".", dir=parent)
    except OSError as e:
        raise WorkdirError(f"cannot write a slim copy to {destination}: {e.strerror} (in {parent}); "
                           "choose another path") from None
    try:
        for name in (CONFIG_FILE, METRICS_FILE):
            if os.path.exists(os.path.join(workdir, name)):
                shutil.copyfile(os.path.join(workdir, name), os.path.join(scratch, name))
        reports = os.path.join(workdir, "reports")
        if os.path.isdir(reports):  # finished reports only, not the journals of running ones
            shutil.copytree(reports, os.path.join(scratch, "reports"), ignore=shutil.ignore_patterns("*.partial"))
            report.make_portable(os.path.join(scratch, "reports"), workdir, os.path.basename(destination))
        manager = checkpointing.make_manager(model, state, os.path.join(scratch, CHECKPOINT_DIR))
        manager.save(checkpoint_number=int(state.step.numpy()))
        io_utils.write_text_atomic(os.path.join(scratch, SLIM_COPY_MARKER), (
            "A slim copy of a pcl-train work dir: weights, prototypes, config, metrics and reports, no optimizer\n"
            "state. pcl-attack and pcl-export read it and write their output elsewhere; pcl-train does not train it.\n"))
        os.rename(scratch, destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return destination


def read_config(path: str) -> ml_collections.ConfigDict:
    """A work dir's config.json over the current defaults, so that work dirs written before a
    field existed still load (the field takes its default)."""
    from pcl_tf.configs import common

    def merge(base: ml_collections.ConfigDict, saved: Dict) -> None:
        for key, value in saved.items():
            if isinstance(value, dict) and key in base and isinstance(base[key], ml_collections.ConfigDict):
                merge(base[key], value)
            else:
                base[key] = tuple(value) if isinstance(value, list) else value

    config = common.base_config()
    saved = io_utils.read_json(path)
    merge(config, saved)
    if "start" not in saved.get("adv", {}):
        # Written before adv.start existed, when adversarial training always started at step 1.
        config.adv.start = "first_step"
    return config
