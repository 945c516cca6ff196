"""The evaluation journal on its own: a round trip, a fingerprint that keeps evaluations apart, and
an unreadable journal named and ignored. (Killing and resuming a real pcl-attack:
tests/test_attack_resume.py.)"""

import logging
import os

import numpy as np

from pcl_tf import journal


RECORDS = {"run": {"clean_correct": [np.array([True, False])], "pgd/correct": [np.array([False, False])]}}


def test_journal_round_trip_and_fingerprint(tmp_path):
    first = journal.EvaluationJournal(str(tmp_path), {"eps": 0.1, "methods": ["pgd"]})
    assert first.load() is None
    first.save(3, RECORDS, {"pgd": 1.5})
    batches, records, seconds = first.load()
    assert batches == 3 and seconds == {"pgd": 1.5}
    np.testing.assert_array_equal(records["run"]["clean_correct"][0], [True, False])
    # Another evaluation (here: another ε) never sees this journal.
    assert journal.EvaluationJournal(str(tmp_path), {"eps": 0.2, "methods": ["pgd"]}).load() is None
    first.remove()
    assert first.load() is None


def test_unreadable_journal_is_named_and_ignored(tmp_path, caplog):
    j = journal.EvaluationJournal(str(tmp_path), {"eps": 0.1})
    os.makedirs(tmp_path, exist_ok=True)
    with open(j.path, "wb") as f:
        f.write(b"PK\x03\x04 truncated")
    with caplog.at_level(logging.WARNING, logger="pcl_tf.journal"):
        assert j.load() is None
    assert f"ignoring the unreadable evaluation journal {j.path}" in caplog.text  # pcl-attack shows it on stderr
