"""pcl_tf.checkpointing: which checkpoint a run resumes from."""

import os

import tensorflow as tf

from pcl_tf import checkpointing


class _Weights:
    """The smallest thing restore_latest restores: one variable as the model's checkpoint item."""

    def __init__(self, value):
        self.v = tf.Variable(value)

    def checkpoint_items(self, optimizers=True):
        return {"v": self.v}


def _manager(model, state, directory):
    return checkpointing.make_manager(model, state, directory)


def test_resumes_from_a_checkpoint_index_without_timestamps(tmp_path):
    """An index written by hand or copied by a tool lacks the timestamps that
    tf.train.CheckpointManager needs to list its checkpoints; the run must still resume from the
    checkpoint it names, never silently start over."""
    directory = str(tmp_path / "checkpoints")
    model, state = _Weights(3.0), checkpointing.RunState.create()
    state.step.assign(940)
    _manager(model, state, directory).save(checkpoint_number=940)
    with open(os.path.join(directory, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "ckpt-940"\nall_model_checkpoint_paths: "ckpt-940"\n')
    fresh, fresh_state = _Weights(0.0), checkpointing.RunState.create()
    manager = _manager(fresh, fresh_state, directory)
    assert manager.checkpoints == []  # what TensorFlow itself lists: nothing
    restored = checkpointing.restore_latest(manager, fresh)
    assert restored == os.path.join(directory, "ckpt-940")
    assert (float(fresh.v.numpy()), int(fresh_state.step.numpy())) == (3.0, 940)


def test_a_fresh_directory_restores_nothing(tmp_path):
    model, state = _Weights(1.0), checkpointing.RunState.create()
    assert checkpointing.restore_latest(_manager(model, state, str(tmp_path / "none")), model) is None
    assert int(state.step.numpy()) == 0
