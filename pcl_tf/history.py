"""The per-epoch training history of a work dir, kept on disk as each epoch ends.

Keras' ``fit`` returns its history only when it finishes; a run stopped by Ctrl-C, killed or
diverged would lose every epoch of that session, and a resumed run would report only the
epochs after the interruption. :class:`EpochHistory` writes ``<workdir>/history.json`` at the
end of every epoch instead, and ``metrics.json`` takes its history from there: every epoch of
the run, before and after any interruption.

The format is Keras' (metric name -> list of values) plus an ``epoch`` list (1-based) that says
which epoch each position is: a metric missing in some epochs (e.g. the robust validation of
early stopping) holds None there, and an epoch trained again after a crash replaces its entry.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional

import keras

from pcl_tf import io_utils

HISTORY_FILE = "history.json"


def append_epoch(history: Mapping[str, List], epoch: int, logs: Mapping[str, float]) -> Dict[str, List]:
    """``history`` with epoch ``epoch`` (1-based) recorded: appended, or replacing the entry of
    that epoch if it is there. Histories written without an ``epoch`` list (before pcl_tf kept
    one) are taken as epochs 1, 2, ... in order."""
    merged = {key: list(values) for key, values in history.items()}
    length = max((len(v) for v in merged.values()), default=0)
    merged.setdefault("epoch", list(range(1, length + 1)))
    for values in merged.values():
        values.extend([None] * (length - len(values)))
    if epoch in merged["epoch"]:
        position = merged["epoch"].index(epoch)
    else:
        position = len(merged["epoch"])
        for values in merged.values():
            values.append(None)
        merged["epoch"][position] = epoch
    for key, value in logs.items():
        merged.setdefault(key, [None] * len(merged["epoch"]))[position] = float(value)
    return merged


def read(workdir: str, fallback: Optional[Mapping[str, List]] = None) -> Dict[str, List]:
    """The work dir's history so far: history.json, else ``fallback`` (the history of a
    metrics.json written before history.json existed), else empty."""
    path = os.path.join(workdir, HISTORY_FILE)
    if os.path.exists(path):
        return io_utils.read_json(path)
    return {key: list(values) for key, values in (fallback or {}).items()}


class EpochHistory(keras.callbacks.Callback):
    """Records each finished epoch's logs in ``<workdir>/history.json`` (atomically) as it ends.
    ``initial`` is the history of earlier sessions (:func:`read`)."""

    def __init__(self, workdir: str, initial: Mapping[str, List]):
        super().__init__()
        self.path = os.path.join(workdir, HISTORY_FILE)
        self.history = dict(initial)

    def on_epoch_end(self, epoch, logs=None):
        self.history = append_epoch(self.history, epoch + 1, logs or {})
        io_utils.write_json_atomic(self.path, self.history)
