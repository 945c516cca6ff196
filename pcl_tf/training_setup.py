"""What a training run builds from its config, checked first: the validation of every field, the
adversary of adversarial training, the model with it, and the optimizers with their schedules.

:func:`validate_config` refuses an impossible config (:class:`ConfigError`, naming the field and
a valid choice) before anything is built or written; :func:`build_model` and
:func:`compile_model` make the model :func:`pcl_tf.experiment.train_and_evaluate` trains.
"""

from __future__ import annotations

from typing import Optional

import keras
import ml_collections

from pcl_tf import adversarial, building, catalogue, early_stopping, models, schedule, training


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field and a valid choice."""

def validate_config(config: ml_collections.ConfigDict) -> None:
    """Rejects impossible values before anything is built or written."""
    try:
        catalogue.info(config.dataset)
    except catalogue.DatasetError as e:
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
    if config.train.lr_schedule not in schedule.LR_SCHEDULES:
        raise ConfigError(f"config.train.lr_schedule={config.train.lr_schedule!r}; choose "
                          f"{', '.join(schedule.LR_SCHEDULES)}")
    if config.train.lr_schedule == "one_cycle_time" and config.train.time_budget_minutes <= 0:
        raise ConfigError("config.train.lr_schedule=one_cycle_time runs the lr over the time budget: set "
                          "config.train.time_budget_minutes > 0 (or choose one_cycle)")
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
        "train.robust_val_steps": config.train.robust_val_steps,
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
    sizes = {"train.num_examples": catalogue.info(config.dataset).train_examples,
             "eval.num_examples": catalogue.info(config.dataset).test_examples}
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
    used = used_train_examples(config)
    if config.train.robust_val_attack not in early_stopping.ATTACK_STEPS:
        raise ConfigError(f"config.train.robust_val_attack={config.train.robust_val_attack!r}; choose "
                          f"{' or '.join(early_stopping.ATTACK_STEPS)}")
    if config.train.robust_val_examples and config.train.robust_val_examples >= used:
        raise ConfigError(f"config.train.robust_val_examples={config.train.robust_val_examples} leaves no training "
                          f"images (the run uses {used}); hold out fewer")
    for epoch in config.train.snapshot_epochs:
        if not 1 <= epoch <= plan.epochs:
            raise ConfigError(f"config.train.snapshot_epochs: {epoch} is not an epoch of this run (1 to {plan.epochs})")
    info = catalogue.info(config.dataset)
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
    channels = catalogue.info(config.dataset).image_shape[-1]
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

def used_train_examples(config) -> int:
    """How many images of the training split a run reads: ``train.num_examples``, or all of them."""
    return config.train.num_examples or catalogue.info(config.dataset).train_examples


def build_model(config: ml_collections.ConfigDict, steps_per_epoch: int = 0) -> training.PCLModel:
    """The (uncompiled) PCLModel a config describes, with the adversary of its adversarial
    training (:func:`make_adversary`; ``steps_per_epoch`` turns its ε ramp into steps)."""
    return building.build_pcl_model(config, make_adversary(config, steps_per_epoch))


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

def compile_model(model: training.PCLModel, config, steps_per_epoch: int, train_seconds=None) -> None:
    """Compiles ``model`` with the config's optimizers and lr schedules. ``train_seconds`` (the
    run's training-time variable, pcl_tf.checkpointing.RunState.seconds) drives the
    ``one_cycle_time`` schedule."""
    learning_rate = schedule.Schedule.from_config(config.train).learning_rate(
        config.train.lr, steps_per_epoch, config.train.lr_decay_factor,
        train_seconds=train_seconds, budget_seconds=60.0 * config.train.time_budget_minutes,
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
