"""pcl_tf.history: every epoch's logs on disk as it ends, across interruptions."""

import json

from pcl_tf import history


def test_epochs_append_and_a_retrained_epoch_replaces_its_entry():
    h = history.append_epoch({}, 1, {"loss": 2.0})
    h = history.append_epoch(h, 2, {"loss": 1.5, "val_robust_accuracy": 0.3})  # a metric that starts later
    assert h == {"epoch": [1, 2], "loss": [2.0, 1.5], "val_robust_accuracy": [None, 0.3]}
    h = history.append_epoch(h, 3, {"loss": 1.2})
    assert h["val_robust_accuracy"] == [None, 0.3, None]
    # Killed after epoch 3 ended but before its checkpoint: epoch 3 is trained again and replaces it.
    h = history.append_epoch(h, 3, {"loss": 1.1, "val_robust_accuracy": 0.4})
    assert h == {"epoch": [1, 2, 3], "loss": [2.0, 1.5, 1.1], "val_robust_accuracy": [None, 0.3, 0.4]}


def test_a_history_without_epoch_numbers_reads_as_epochs_from_one():
    h = history.append_epoch({"loss": [3.0, 2.0]}, 3, {"loss": 1.0})
    assert h == {"loss": [3.0, 2.0, 1.0], "epoch": [1, 2, 3]}


def test_the_callback_writes_each_epoch_as_it_ends_and_a_new_session_continues(tmp_path):
    workdir = str(tmp_path)
    first = history.EpochHistory(workdir, history.read(workdir))
    first.on_epoch_end(0, {"loss": 2.0})
    first.on_epoch_end(1, {"loss": 1.0})
    # The session is interrupted here: no metrics.json, but the two epochs are on disk.
    assert json.load(open(tmp_path / history.HISTORY_FILE)) == {"epoch": [1, 2], "loss": [2.0, 1.0]}
    second = history.EpochHistory(workdir, history.read(workdir))
    second.on_epoch_end(2, {"loss": 0.5})
    assert history.read(workdir) == {"epoch": [1, 2, 3], "loss": [2.0, 1.0, 0.5]}
    # A work dir from before history.json: its metrics.json history is the start.
    assert history.read(str(tmp_path / "old"), fallback={"loss": [9.0]}) == {"loss": [9.0]}
