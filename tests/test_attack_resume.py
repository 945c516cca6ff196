"""Kill -9 a running ``pcl-attack`` and run the same command again: it continues after its last
finished batch and writes the report an uninterrupted run writes (but for the seconds). Also the
journal of a finished evaluation is removed (the journal on its own: tests/test_journal.py), and
Ctrl-C stops it at once, even while TensorFlow runs an op that would not end by itself.

The evaluations are real ``pcl-attack`` processes (its ``main`` under ``tfds.testing.mock_data``,
which gives every process the same test images) on a CNN-6 trained here with the smoke config.
"""

import glob
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from pcl_tf import experiment, journal

CONFIG = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "fmnist_cnn6.py")
BATCHES = 6
ATTACK_ARGS = ["--method=fgsm,pgd,apgd-ce", "--eps=0.1", "--steps=5", f"--num_examples={8 * BATCHES}",
               "--batch_size=8", "--progress=false", "--audit=false"]

SCRIPT = r"""
import sys, time
import tensorflow_datasets as tfds
from pcl_tf import journal
if sys.argv[1] == "slow":  # a visible pace between batches, so the test can kill mid-run
    save = journal.EvaluationJournal.save
    def paced(self, *args):
        save(self, *args)
        time.sleep(1.0)
    journal.EvaluationJournal.save = paced
if sys.argv[1] == "hang":  # after the first batch, TensorFlow runs one op that does not end by itself
    import tensorflow as tf
    save = journal.EvaluationJournal.save
    endless = tf.function(lambda: tf.while_loop(lambda i: i >= 0, lambda i: i + 1, [tf.constant(0, tf.int64)]))
    def hang(self, *args):
        save(self, *args)
        print("in the endless op", flush=True)
        endless()
    journal.EvaluationJournal.save = hang
from pcl_tf.cli import attack
sys.argv = ["pcl-attack"] + sys.argv[2:]
with tfds.testing.mock_data(num_examples=64):
    attack.run()
"""


def pcl_attack(pace, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-c", SCRIPT, pace, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def without_timing(reports):
    """The report less what depends on the clock (seconds, the date)."""
    for r in reports:
        r.pop("environment")
        for a in r["attacks"].values():
            a.pop("seconds")
    return reports


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("cfg", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    config.train.num_examples, config.eval.num_examples = 64, 32
    workdir = str(tmp_path_factory.mktemp("train") / "run")
    with tfds.testing.mock_data(num_examples=96):
        experiment.train_and_evaluate(config, workdir, verbose=0)
    return workdir


@pytest.fixture(scope="module")
def uninterrupted(workdir, tmp_path_factory):
    stem = str(tmp_path_factory.mktemp("whole") / "report")
    finish(pcl_attack("fast", f"--workdir={workdir}", f"--output={stem}", *ATTACK_ARGS))
    return stem


def test_killed_evaluation_resumes_after_its_last_batch_with_the_same_report(workdir, uninterrupted, tmp_path):
    stem = str(tmp_path / "report")
    args = [f"--workdir={workdir}", f"--output={stem}", *ATTACK_ARGS]
    proc = pcl_attack("slow", *args)
    deadline = time.time() + 240
    journals = []
    while time.time() < deadline and proc.poll() is None:
        journals = glob.glob(stem + ".partial/*.npz")
        if journals:
            time.sleep(0.3)  # inside the pause after a batch's journal was written
            break
        time.sleep(0.05)
    assert journals and proc.poll() is None, "the evaluation ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not os.path.exists(stem + ".json")  # nothing half-written
    finished = journal_batches(journals[0])
    assert 1 <= finished < BATCHES

    out = finish(pcl_attack("fast", *args))
    assert f"resuming an interrupted evaluation after {8 * finished} images ({finished} batches)" in out
    assert without_timing(json.load(open(stem + ".json"))) == without_timing(json.load(open(uninterrupted + ".json")))
    assert not os.path.exists(stem + ".partial")  # the finished evaluation's journal is gone
    assert all(r["model"]["checkpoint"]["newest"] for r in json.load(open(stem + ".json")))  # what was scored


def journal_batches(path):
    with np.load(path) as f:
        return json.loads(str(f[journal.META_KEY]))["batches"]


def test_ctrl_c_stops_at_once_inside_a_long_tensorflow_op_and_keeps_the_finished_batches(workdir, tmp_path):
    """A Python signal handler waits for TensorFlow's op to return (here: never); pcl-attack's
    Ctrl-C does not. One line, exit 130, the journal intact, no temporary or report file."""
    stem = str(tmp_path / "report")
    proc = pcl_attack("hang", f"--workdir={workdir}", f"--output={stem}", *ATTACK_ARGS)
    try:
        lines = []
        while not lines or lines[-1] not in ("in the endless op\n", ""):
            lines.append(proc.stdout.readline())  # "" at the end of the output: the run ended
        time.sleep(1.0)  # well inside the op
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # Ctrl-C did not stop it: the op never ends
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("pcl-attack: interrupted: the batches already attacked are kept in the "
                                            "report's .partial journal; run the same command to resume after them")
    assert journal_batches(glob.glob(stem + ".partial/*.npz")[0]) == 1
    leftovers = [name for _, _, names in os.walk(tmp_path) for name in names if name.endswith(".tmp")]
    assert not leftovers and not os.path.exists(stem + ".json")
