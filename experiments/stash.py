"""Carry long experiments across sessions: the resumable state of a driver's root, in a folder
that is committed to the repository (a session's work dir may not survive it).

A *root* is what a driver (reproduce_fmnist.py, bench/time_to_robustness.py,
bench/catastrophic_overfitting.py) writes: ``pcl-train`` work dirs (any folder holding a
``config.json``, at any depth) and result files. :func:`stash` copies, per work dir, what
``pcl-train`` needs to resume and the drivers need to render — config.json, metrics.json,
history.json (the per-epoch history and the wall time already spent, which a time-budgeted run
counts against its budget), the newest checkpoint (weights, prototypes, optimizer state), and its
snapshots and robust early stopping's kept epoch (``best_robust/``; a driver may ask for lighter
copies of runs it no longer trains: records only, or the kept epoch's weights only) — every finished result
(JSON, Markdown, PNG) outside the work dirs, and the journals of unfinished evaluations
(``<report>.partial/*.npz``, see :mod:`pcl_tf.journal`: a long ``pcl-attack`` goes on after its
last finished batch in the next session). Logs, TensorBoard files, older checkpoints and hidden
scratch files stay behind. :func:`unstash` seeds a root from a stash: a work dir that has no
checkpoint yet is replaced by its stashed copy, so the run resumes where the stashed session
stopped; result files and journals missing from the root are copied in (a journal only while its
report is not written).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Optional

from pcl_tf.cli.common import import_tensorflow_quietly

# Every driver (reproduce_fmnist, reproduce_render, the long benchmarks) imports this module before
# anything that loads TensorFlow: loaded here, its start-up lines stay off the driver's console.
import_tensorflow_quietly()

from pcl_tf import checkpointing, io_utils  # noqa: E402

RUN_FILES = ("config.json", "metrics.json", "history.json")
RESULT_EXTENSIONS = (".json", ".md", ".png")
SKIPPED_DIRS = ("logs", "tensorboard", "checkpoints", "snapshots", "best_robust")
# A killed evaluation's journal: <report stem>.partial/<hash>.npz, beside where its report will be.
JOURNAL_DIR_SUFFIX, JOURNAL_EXTENSION = ".partial", ".npz"
# How much of a run's weights its stashed copy carries: everything a resumed training needs (the newest
# checkpoint with its optimizer state, snapshots, the kept point), the kept point's weights alone (a
# finished run, evaluated from best_robust/), or none (its records only).
TRAINING_STATE, KEPT_POINT_ONLY, RECORDS_ONLY = "training state", "the kept point's weights only", "without weights"


def workdirs(root: str) -> List[str]:
    """The ``pcl-train`` work dirs under ``root`` (relative paths, sorted): folders with a
    config.json that are not inside another work dir."""
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        if "config.json" in files and directory != root:
            found.append(os.path.relpath(directory, root))
            subdirs[:] = []  # a work dir's own folders are copied with it
    return found


def _files_outside_runs(root: str, runs: Iterable[str], keep, under: Optional[Iterable[str]] = None) -> List[str]:
    """Files under ``root`` (relative paths, only below the folders ``under`` when given) outside
    the work dirs ``runs`` and the skipped and hidden folders, for which ``keep(directory, name)``."""
    inside = {os.path.join(root, r) for r in runs}
    found = []
    for top in ([root] if under is None else [os.path.join(root, u) for u in under]):
        for directory, subdirs, files in os.walk(top):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d not in SKIPPED_DIRS
                                and os.path.join(directory, d) not in inside)
            found += [os.path.relpath(os.path.join(directory, f), root) for f in sorted(files)
                      if not f.startswith(".") and keep(directory, f)]
    return found


def _results(root: str, runs: Iterable[str], under: Optional[Iterable[str]] = None) -> List[str]:
    """Finished result files under ``root`` outside the work dirs (relative paths), only those
    below the folders ``under`` (relative to ``root``) when given."""
    return _files_outside_runs(root, runs, lambda directory, name: name.endswith(RESULT_EXTENSIONS), under)


def _journals(root: str, runs: Iterable[str]) -> List[str]:
    """Journals of unfinished evaluations under ``root`` outside the work dirs (relative paths)."""
    return _files_outside_runs(root, runs, lambda directory, name: directory.endswith(JOURNAL_DIR_SUFFIX)
                               and name.endswith(JOURNAL_EXTENSION))


def _report_written(root: str, journal: str) -> bool:
    """Whether the report a journal belongs to exists under ``root`` (the evaluation finished)."""
    return os.path.exists(os.path.join(root, os.path.dirname(journal)[:-len(JOURNAL_DIR_SUFFIX)] + ".json"))


def _copy_file(source: str, target: str) -> None:
    """``source`` to ``target`` (its folder made), written beside it and renamed over it."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target + ".partial")
    os.replace(target + ".partial", target)


def _copy_run(source: str, target: str, newest: Optional[str], weights: str) -> None:
    """One work dir's records and, as ``weights`` says (:data:`TRAINING_STATE`, :data:`KEPT_POINT_ONLY`,
    :data:`RECORDS_ONLY`), its weights (``newest``: its newest training checkpoint, which only
    :data:`TRAINING_STATE` copies), written beside ``target`` and renamed over it."""
    if weights not in (TRAINING_STATE, KEPT_POINT_ONLY, RECORDS_ONLY):
        raise ValueError(f"unknown weights {weights!r}")
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="." + os.path.basename(target) + ".", dir=parent)
    try:
        if weights == TRAINING_STATE:
            os.makedirs(os.path.join(scratch, "checkpoints"))
            for name in os.listdir(os.path.join(source, "checkpoints")):
                if name.startswith(newest + "."):
                    shutil.copyfile(os.path.join(source, "checkpoints", name), os.path.join(scratch, "checkpoints", name))
            with open(os.path.join(scratch, "checkpoints", "checkpoint"), "w", encoding="utf-8") as f:
                # With a timestamp, as tf.train.CheckpointManager writes it (it ignores entries without).
                f.write(f'model_checkpoint_path: "{newest}"\nall_model_checkpoint_paths: "{newest}"\n'
                        f'all_model_checkpoint_timestamps: {time.time()}\n')
        for name in RUN_FILES:
            if os.path.exists(os.path.join(source, name)):
                shutil.copyfile(os.path.join(source, name), os.path.join(scratch, name))
        loadable = {TRAINING_STATE: ("snapshots", "best_robust"), KEPT_POINT_ONLY: ("best_robust",), RECORDS_ONLY: ()}
        for folder in loadable[weights]:
            if os.path.isdir(os.path.join(source, folder)):
                shutil.copytree(os.path.join(source, folder), os.path.join(scratch, folder),
                                ignore=shutil.ignore_patterns(".*"))
        kept = os.path.join(source, "best_robust")
        if weights == RECORDS_ONLY and os.path.isdir(kept):
            # Without weights, the kept point's record still travels: the drivers' tables read it.
            os.makedirs(os.path.join(scratch, "best_robust"))
            for name in os.listdir(kept):
                if name.endswith(".json") and not name.startswith("."):
                    shutil.copyfile(os.path.join(kept, name), os.path.join(scratch, "best_robust", name))
        if os.path.exists(target):
            shutil.rmtree(target)
        os.rename(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def stash(root: str, destination: str, runs: Optional[Iterable[str]] = None,
          results_under: Optional[Iterable[str]] = None, without_weights: Iterable[str] = (),
          kept_weights_only: Iterable[str] = ()) -> List[str]:
    """Copies the resumable state of ``runs`` (work dirs relative to ``root``; default: every one
    found) and the finished results (those below ``results_under`` when given) into
    ``destination``. Runs in or below a folder of ``without_weights`` (a benchmark's calibrations, whose
    metrics alone are read again; finished runs whose kept weights ship elsewhere) are stashed
    without their checkpoints, with their records (and ``best_robust/``'s), which keeps the
    repository small. Runs in ``kept_weights_only`` (finished runs that are evaluated from their
    ``best_robust/`` copy and never trained further) keep that copy's weights but not the training
    checkpoint with its optimizer state (3.5 MB rather than 14 for a CNN-6 run); a run without a
    loadable ``best_robust/`` keeps its checkpoint, and one with no training checkpoint (seeded from
    such a stash) its kept point's. Each run's copy replaces the previous one atomically. Returns the
    runs stashed (a run with no weights at all is left out: not started, or seeded without them)."""
    runs = workdirs(root) if runs is None else list(runs)
    without_weights = list(without_weights)
    light = tuple(os.path.join(w, "") for w in without_weights)
    stashed = []
    for run in runs:
        source = os.path.join(root, run)
        newest = checkpointing.newest_checkpoint_name(os.path.join(source, "checkpoints"))
        kept_point = checkpointing.newest_checkpoint_name(os.path.join(source, "best_robust", "checkpoints"))
        if newest is None and kept_point is None:
            continue  # not started, or seeded from a stash that held its records alone
        if run in without_weights or run.startswith(light):
            weights = RECORDS_ONLY
        elif kept_point is not None and (run in kept_weights_only or newest is None):
            # (a run seeded from a kept-point-only stash has those weights and no others)
            weights = KEPT_POINT_ONLY
        else:
            weights = TRAINING_STATE
        _copy_run(source, os.path.join(destination, run), newest, weights)
        print(f"[stashed] {run}: {newest if weights == TRAINING_STATE else weights} -> {os.path.join(destination, run)}",
              flush=True)
        stashed.append(run)
    for path in _results(root, workdirs(root), results_under):
        _copy_file(os.path.join(root, path), os.path.join(destination, path))
    journals = _journals(root, workdirs(root))
    for path in journals:
        _copy_file(os.path.join(root, path), os.path.join(destination, path))
        print(f"[stashed] the journal of an unfinished evaluation: {os.path.dirname(path)}", flush=True)
    for path in _journals(destination, workdirs(destination)):
        if path not in journals:  # finished (its report is stashed) or superseded
            os.remove(os.path.join(destination, path))
            if not os.listdir(os.path.dirname(os.path.join(destination, path))):
                os.rmdir(os.path.dirname(os.path.join(destination, path)))
    return stashed


def unstash(root: str, source: str) -> List[str]:
    """Seeds ``root`` from a stash: each stashed run whose work dir has no checkpoint is copied in
    (a work dir without a checkpoint holds nothing to keep); result files the root lacks are
    copied. Returns the runs seeded."""
    if not os.path.isdir(source):
        return []
    seeded = []
    for run in workdirs(source):
        stashed, target = os.path.join(source, run), os.path.join(root, run)
        if checkpointing.newest_checkpoint_name(os.path.join(target, "checkpoints")) or os.path.exists(
                os.path.join(target, "metrics.json")):
            continue  # the root's own run is at least as far
        if os.path.exists(target):
            shutil.rmtree(target)
        shutil.copytree(stashed, target)
        newest = checkpointing.newest_checkpoint_name(os.path.join(target, "checkpoints"))
        print(f"[unstashed] {run}: {newest or 'its records, no training checkpoint'} from {stashed}", flush=True)
        seeded.append(run)
    for path in _results(source, workdirs(source)):
        if not os.path.exists(os.path.join(root, path)):
            _copy_file(os.path.join(source, path), os.path.join(root, path))
    for path in _journals(source, workdirs(source)):
        if not os.path.exists(os.path.join(root, path)) and not _report_written(root, path):
            _copy_file(os.path.join(source, path), os.path.join(root, path))
    return seeded


def ship_once(name: str, destination: str, missing: List[str], build: Callable[[str], str]) -> bool:
    """Writes a shipped copy at ``destination`` once: skipped with a line when it exists (never
    written over) or when files it needs are ``missing``; else ``build(scratch)`` assembles it in a
    hidden scratch folder beside ``destination`` and returns its path there, which is renamed into
    place (a crash leaves no half-written copy). Returns whether it was written."""
    if os.path.exists(destination):
        print(f"[shipped]  {name}: {destination} exists (never written over)", flush=True)
        return False
    if missing:
        print(f"[not shipped] {name}: {len(missing)} file(s) missing, e.g. {missing[0]}", flush=True)
        return False
    parent = os.path.dirname(os.path.abspath(destination))
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{os.path.basename(destination)}.", dir=parent)
    try:
        os.rename(build(scratch), destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"[shipped]  {name} -> {destination}", flush=True)
    return True


def add_flag(parser) -> None:
    """``--stash=DIR`` on a driver's argparse parser (its ``--stage`` offers ``stash``)."""
    parser.add_argument("--stash", default="",
                        help="a folder (committed) that carries the runs across sessions: read first (a run with no "
                             "checkpoint resumes from it), written by --stage=stash (before a session ends)")


def refuse_unwritable(parser, folders: Optional[Dict[str, str]] = None, files: Optional[Dict[str, str]] = None) -> None:
    """Stops a driver with one line (argparse's usage error, exit 2) when a folder or file it will
    write (``{flag: path}``; empty paths are skipped) cannot be created or written — before any
    work starts, so nothing is half-written."""
    # A folder is blocked by a file in its place or by an unwritable ancestor; a file by its folder.
    wanted = [(flag, path, os.path.join(path, "_")) for flag, path in (folders or {}).items() if path]
    wanted += [(flag, path, path) for flag, path in (files or {}).items() if path]
    for flag, path, probe in wanted:
        blocked = io_utils.blocking_ancestor(probe)
        if blocked:
            parser.error(f"--{flag}={path} cannot be written ({blocked} is not a writable directory); "
                         "choose another path")


def handle(args, parser, **stash_options) -> bool:
    """A driver's stash handling: with ``--stage=stash`` stashes ``args.root`` into ``args.stash``
    and returns True (the driver then stops); otherwise seeds the root from ``args.stash`` when
    given (not on a dry run) and returns False."""
    if args.stage == "stash":
        if not args.stash:
            parser.error("--stage=stash needs --stash=DIR")
        refuse_unwritable(parser, folders={"stash": args.stash})
        stash(args.root, args.stash, **stash_options)
        return True
    if args.stash and not args.dry_run:
        unstash(args.root, args.stash)
    return False
