"""The progress journal of a long evaluation: a killed ``pcl-attack`` resumes from its last finished batch.

An evaluation streams the test set in batches and keeps only per-sample scalars (see
:func:`pcl_tf.evaluation.attack_dataset`). After every batch those arrays, the attack seconds
and the number of finished batches are written to one ``.npz`` file, atomically (temporary file,
then rename), so a kill at any moment leaves either the previous state or the new one. Run the
same command again and the evaluation skips the finished batches and goes on; every attack draws
its randomness from the seed alone (not from what ran before), so the report is the one an
uninterrupted run writes, but for the seconds.

A journal belongs to one evaluation: its file name is a hash of everything that decides the
result (models and their checkpoints, attacks and parameters, ε, seed, data, batch size), so a
changed command never picks up a stale journal. The caller removes it once the report is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from pcl_tf import io_utils

logger = logging.getLogger(__name__)

META_KEY = "__journal__"

Records = Dict[str, Dict[str, List[np.ndarray]]]


class EvaluationJournal:
    """Saves and restores the per-batch records of one evaluation at ``<directory>/<hash>.npz``."""

    def __init__(self, directory: str, fingerprint: Dict):
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        digest = hashlib.sha1(json.dumps(self.fingerprint, sort_keys=True).encode()).hexdigest()[:16]
        self.path = os.path.join(directory, f"evaluation-{digest}.npz")

    def load(self) -> Optional[Tuple[int, Records, Dict[str, float]]]:
        """``(finished batches, records, seconds per attack)``, or None when there is nothing to
        resume. An unreadable journal (a disk that filled up, a foreign file) is named in a warning
        and ignored: the evaluation starts over and nothing is lost but time."""
        if not os.path.exists(self.path):
            return None
        try:
            with np.load(self.path, allow_pickle=False) as f:
                meta = json.loads(str(f[META_KEY]))
                if meta["fingerprint"] != self.fingerprint:
                    raise ValueError("it belongs to another evaluation")
                records: Records = {}
                for i, target in enumerate(meta["targets"]):
                    records[target] = {key: [f[f"{i}/{key}"]] for key in meta["keys"][i]}
        except Exception as e:  # noqa: BLE001 - any unreadable file means: start over
            logger.warning("ignoring the unreadable evaluation journal %s (%s); starting over", self.path, e)
            return None
        return int(meta["batches"]), records, {k: float(v) for k, v in meta["seconds"].items()}

    def save(self, batches: int, records: Records, seconds: Dict[str, float]) -> None:
        """Writes the state after ``batches`` finished batches, atomically."""
        targets = list(records)
        arrays = {}
        for i, target in enumerate(targets):
            for key, values in records[target].items():
                arrays[f"{i}/{key}"] = np.concatenate(values)
        meta = {"fingerprint": self.fingerprint, "batches": int(batches), "seconds": seconds,
                "targets": targets, "keys": [list(records[t]) for t in targets]}
        arrays[META_KEY] = np.array(json.dumps(meta))
        with io_utils.open_atomic(self.path, "wb") as f:
            np.savez(f, **arrays)

    def remove(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
