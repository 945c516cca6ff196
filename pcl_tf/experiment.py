"""A training run from a config: check, build, train with resume, evaluate, write the work dir.

:func:`train_and_evaluate` is ``pcl-train``: it validates the config
(:mod:`pcl_tf.training_setup`), refuses a work dir holding another run (:mod:`pcl_tf.workdir`),
builds and compiles the model, restores the newest checkpoint, trains with Keras' ``fit`` (or
pcl_tf's loop under distribution) and writes metrics.json. Running the same command again resumes
from the last checkpoint; see :mod:`pcl_tf.workdir` for what a work dir holds.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, Optional, Tuple

import keras
import ml_collections
import tensorflow as tf
from absl import logging

from pcl_tf import (catalogue, checkpointing, custom_loop, data, distribute, early_stopping, evaluation, export,
                    io_utils, prepare, schedule, training, training_setup, versions, workdir as workdirs)
from pcl_tf import history as run_history


class TrainingInterrupted(RuntimeError):
    """Ctrl-C during training: the message says which checkpoint was written."""

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
    training_setup.validate_config(config)
    if workdirs.is_slim_copy(workdir):
        raise workdirs.WorkdirError(f"{workdir} is a slim copy (weights without optimizer state, like the models shipped in "
                           "models/): it evaluates and exports but does not train; give pcl-train another --workdir")
    plan = schedule.Schedule.from_config(config.train)
    data_dir = config.data_dir or None
    workdirs.check_workdir_matches(workdir, config)
    workdirs.check_directory_path(workdir)  # before the data: a bad --workdir is found in a second
    prepare.ensure_prepared(config.dataset, data_dir)  # fail fast, before anything is written

    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    info = catalogue.info(config.dataset)
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
        raise training_setup.ConfigError("the training set is empty or of unknown size; check config.train.num_examples")

    with strategy.scope():
        model = training_setup.build_model(config, steps_per_epoch)
        state = checkpointing.RunState.create()
        training_setup.compile_model(model, config, steps_per_epoch, train_seconds=state.seconds)
    manager = checkpointing.make_manager(model, state, os.path.join(workdir, workdirs.CHECKPOINT_DIR))
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
        workdirs.write_config(workdir, config)
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
        io_utils.write_json_atomic(os.path.join(destination, workdirs.CONFIG_FILE), config.to_dict())
        io_utils.write_json_atomic(os.path.join(destination, workdirs.METRICS_FILE), {
            "dataset": info.name, "model": config.model, "pcl_branches": config.pcl.branches,
            "epochs": epoch, "run_epochs": plan.epochs, "warmup_epochs": plan.warmup_epochs,
            "schedule": plan.describe(), "steps_per_epoch": steps_per_epoch,
            "learning_rate": float(keras.ops.convert_to_tensor(model.optimizer.learning_rate)),
            "train_seconds": round(float(state.seconds.numpy()), 1),
            "test": evaluation.clean_accuracy(model, test_ds),
        })

    if chief and config.train.snapshot_epochs:
        callbacks.append(checkpointing.EpochSnapshots(
            os.path.join(workdir, workdirs.SNAPSHOT_DIR), config.train.snapshot_epochs,
            lambda: model.checkpoint_items(optimizers=False), state, write_copy_files))
    robust_validation = None
    if config.train.robust_val_examples:
        # Rice et al.'s robust early stopping: robust accuracy on the held-out slice every epoch,
        # the most robust epoch kept in <workdir>/best_robust/.
        robust_validation = early_stopping.RobustValidation(
            robust_validation_data(config), robust_validation_eps(config),
            os.path.join(workdir if chief else scratch, workdirs.BEST_ROBUST_DIR),
            lambda: model.checkpoint_items(optimizers=False), write_copy_files,
            attack=config.train.robust_val_attack, steps=config.train.robust_val_steps or None)
        callbacks.append(robust_validation)
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard"), write_graph=False))
        # Last: it records the logs every callback before it added to (robust validation's).
        epoch_history = run_history.EpochHistory(workdir, run_history.read(workdir, workdirs.previous_metrics(workdir).get("history")))
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
    if budget_seconds:  # last: a budget ending on an epoch's last step lets every epoch-end callback run first
        callbacks.append(training.StopAtTimeBudget(budget_seconds, step_checkpoint.elapsed))
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
    previous = workdirs.previous_metrics(workdir)
    budget_end = previous.get("budget_end_validation")
    final_step = int(state.step.numpy())
    if (budget_reached and final_step % steps_per_epoch and robust_validation is not None
            and (budget_end or {}).get("step") != final_step):
        # The steps after the last finished epoch (where a time-based schedule anneals the
        # learning rate to 0) are validated too; once per step count, so a rerun does not repeat it.
        # A budget that ended with an epoch was validated at that epoch's end.
        robust_validation.set_model(model)
        budget_end = robust_validation.validate_unfinished_epoch(
            -(-final_step // steps_per_epoch), final_step)  # the epoch the step is in
        logging.info("at the time budget's end (step %d): held-out clean / FGSM / PGD accuracy %.3f / %.3f / %.3f%s",
                     budget_end["step"], budget_end["val_clean_accuracy"], budget_end["val_fgsm_accuracy"],
                     budget_end["val_robust_accuracy"], ", the most robust so far: kept" if budget_end["kept"] else "")
        if chief:
            _log_budget_end_to_tensorboard(os.path.join(workdir, "tensorboard"), budget_end)
    if not chief:
        shutil.rmtree(scratch, ignore_errors=True)  # now, not only at exit

    test = evaluation.clean_accuracy(model, test_ds)
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
        # Robust validation of the unfinished epoch a time budget ended (see RobustValidation).
        **({"budget_end_validation": budget_end} if budget_end else {}),
        "history": epoch_history.history if chief else history,
        "test": test,
    }
    if chief:
        io_utils.write_json_atomic(os.path.join(workdir, workdirs.METRICS_FILE), metrics)
    return metrics


def train_and_export(config: ml_collections.ConfigDict, workdir: str, *, strategy: str = "auto", cpu_devices: int = 0,
                     verbose="auto", export_dir: Optional[str] = None,
                     announce: Callable[[str], None] = logging.info) -> Tuple[Dict, Optional[str]]:
    """``pcl-train``: :func:`train_and_evaluate` under the named ``tf.distribute`` strategy
    (:data:`pcl_tf.distribute.STRATEGIES`; ``cpu_devices`` > 0 first splits the CPU into that
    many logical devices), then, when ``export_dir`` is given, a SavedModel of the trained model
    in its next free version (written by the chief only). The export destination is checked
    before training, so a bad one is refused before hours of training. Returns the metrics and
    the export's path (None when not exported)."""
    if export_dir:
        versions.check_destination(export_dir)
    if cpu_devices:
        distribute.split_cpu(cpu_devices)
    tf_strategy = distribute.make_strategy(strategy)
    metrics = train_and_evaluate(config, workdir, verbose=verbose, strategy=tf_strategy, announce=announce)
    exported = None
    if export_dir and distribute.is_chief(tf_strategy):
        exported = export.export_workdir(workdir, export_dir)
    return metrics, exported



def _log_budget_end_to_tensorboard(directory: str, budget_end: Dict) -> None:
    """Adds the budget-end validation to the run's TensorBoard validation curves, so they end where
    training ended rather than at the last finished epoch.

    Keras' TensorBoard callback writes epoch ``e`` (1-based) at step ``e - 1``; the unfinished epoch
    the budget stopped in gets the step that epoch would have had, under the same tags."""
    writer = tf.summary.create_file_writer(os.path.join(directory, "validation"))
    with writer.as_default():
        for key, value in budget_end.items():  # the measurements RobustValidation adds to epoch logs
            if key.startswith("val_"):
                tf.summary.scalar("epoch_" + key[len("val_"):], value, step=budget_end["epoch"] - 1)
    writer.close()


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

def _merge_history(previous: Dict, new: Dict) -> Dict:
    merged = {k: list(v) for k, v in previous.items()}
    for key, values in new.items():
        merged.setdefault(key, []).extend(values)
    return merged

def _train_data(config, seed: int) -> tf.data.Dataset:
    """One epoch of training batches, shuffled (and augmented where the dataset has it) by ``seed``:
    the first ``train.num_examples`` images of the split (all: 0), less the last
    ``train.robust_val_examples`` of them, which robust early stopping holds out."""
    used = training_setup.used_train_examples(config)
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

def robust_validation_data(config) -> tf.data.Dataset:
    """The held-out slice of robust early stopping: the last ``train.robust_val_examples`` of the
    training images a run uses, never trained on."""
    used = training_setup.used_train_examples(config)
    return data.load(config.dataset, "train", batch_size=config.eval.batch_size, data_dir=config.data_dir or None,
                     skip_examples=used - config.train.robust_val_examples,
                     num_examples=config.train.robust_val_examples, num_examples_name="config.train.robust_val_examples")

def robust_validation_eps(config) -> float:
    """``train.robust_val_eps``, or the largest ε adversarial training uses, or the paper's ε."""
    if config.train.robust_val_eps:
        return float(config.train.robust_val_eps)
    if config.adv.method != "none":
        return float(config.adv.eps_max)
    from pcl_tf.attacks import registry

    return registry.paper_eps(config.dataset)
