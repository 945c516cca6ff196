"""The work dir of a training run, as files: what a later command reads from it.

::

    config.json       the resolved config (what `pcl-attack` and `pcl-export` rebuild from)
    checkpoints/      tf.train checkpoints: network, centroids, both optimizers, epoch
    metrics.json      training history and clean test accuracy (softmax and Eq. 6), when training ends
    history.json      the history so far, written as each epoch ends (kept across interruptions)
    tensorboard/      every loss term per epoch
    snapshots/        loadable copies of the model at config.train.snapshot_epochs (if any)
    reports/          pcl-attack's robustness reports

Reading and writing config.json (and refusing to resume a work dir with other settings), loading
the trained model (:func:`load_trained`) and slim copies (:func:`slim_copy`, the models shipped in
models/). Loading builds the model alone (:mod:`pcl_tf.building`), not a training run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Dict, Tuple

import ml_collections
from absl import logging

from pcl_tf import building, checkpointing, config_schema, io_utils, report, training

CONFIG_FILE = "config.json"

METRICS_FILE = "metrics.json"

CHECKPOINT_DIR = "checkpoints"

SNAPSHOT_DIR = "snapshots"  # <workdir>/snapshots/epoch_<E>/: loadable copies kept at train.snapshot_epochs

BEST_ROBUST_DIR = "best_robust"  # <workdir>/best_robust/: the epoch most robust on held-out data


class WorkdirError(ValueError):
    """A work dir that is missing, unreadable, or holds a different run."""

def write_config(workdir: str, config) -> None:
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

def check_directory_path(workdir: str) -> None:
    """Refuses a work dir that is a file, or lies under a file or an unwritable directory."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"cannot create the work dir {workdir}: it is a file; choose another --workdir")
    blocked = io_utils.blocking_ancestor(workdir)
    if blocked:
        raise WorkdirError(f"cannot create the work dir {workdir}: {blocked} is not a writable directory; "
                           "choose another --workdir")

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

def previous_metrics(workdir: str) -> Dict:
    path = os.path.join(workdir, METRICS_FILE)
    return io_utils.read_json(path) if os.path.exists(path) else {}

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
    model = building.build_pcl_model(config)
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
    def merge(base: ml_collections.ConfigDict, saved: Dict) -> None:
        for key, value in saved.items():
            if isinstance(value, dict) and key in base and isinstance(base[key], ml_collections.ConfigDict):
                merge(base[key], value)
            else:
                base[key] = tuple(value) if isinstance(value, list) else value

    config = config_schema.base_config()
    saved = io_utils.read_json(path)
    merge(config, saved)
    if "start" not in saved.get("adv", {}):
        # Written before adv.start existed, when adversarial training always started at step 1.
        config.adv.start = "first_step"
    return config
