"""Kill -9 a training run mid-epoch and run it again: it resumes from the last step checkpoint,
loses at most ``checkpoint_every_steps`` steps, and in deterministic mode ends with the same
weights as an uninterrupted run. Also: a corrupt newest checkpoint falls back to the one before.

Runs are real subprocesses on TFDS mock data (the same images in every process).
"""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

EVERY = 3  # checkpoint every 3 steps
STEPS_PER_EPOCH = 8  # 256 examples / batch 32
EPOCHS = 3

SCRIPT = r"""
import os, sys, time
import numpy as np
import tensorflow_datasets as tfds
from pcl_tf import checkpointing, experiment
from pcl_tf import workdir as workdirs
from pcl_tf.configs import fmnist_cnn6

workdir, slow = sys.argv[1], sys.argv[2] == "slow"
if slow:  # a visible pace, so the test can kill it mid-epoch; the arithmetic is unchanged
    original = checkpointing.StepCheckpoint.on_train_batch_end
    def paced(self, batch, logs=None):
        original(self, batch, logs)
        # written then renamed, so the test never reads a half-written (empty) file
        with open(os.path.join(workdir, "progress.tmp"), "w") as f:
            f.write(str(int(self.state.step.numpy())))
        os.replace(os.path.join(workdir, "progress.tmp"), os.path.join(workdir, "progress.txt"))
        time.sleep(0.4)
    checkpointing.StepCheckpoint.on_train_batch_end = paced
config = fmnist_cnn6.get_config("smoke")
config.train.num_examples, config.train.batch_size, config.train.epochs = 256, 32, %(epochs)d
config.train.checkpoint_every_steps, config.deterministic = %(every)d, True
config.eval.num_examples = 32
# TFDS mock data draws its random images from state shared by every pipeline of the process, so
# the class-means pipeline of the PC switch would change which images the training pipeline
# sees (real TFDS data reads files and has no such coupling): start from N(0, 1) here.
config.pcl.centroid_init = "normal"
with tfds.testing.mock_data(num_examples=300):
    try:
        experiment.train_and_evaluate(config, workdir, verbose=0)
    except experiment.TrainingInterrupted as e:  # what pcl-train turns into one line and exit 130
        print(e, file=sys.stderr)
        sys.exit(130)
    model, _ = workdirs.load_trained(workdir)
np.savez(os.path.join(workdir, "final.npz"), *[w.numpy() for w in model.network.weights + model.centroid_variables])
""" % {"epochs": EPOCHS, "every": EVERY}


def run(workdir, mode="fast", **kwargs):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(workdir), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]


def wait_for_step(proc, workdir, step, timeout=240):
    """Waits until a "slow" run has finished ``step`` steps; returns the steps done by then."""
    progress = workdir / "progress.txt"
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = progress.read_text().strip() if progress.exists() else ""
        if text and int(text) >= step:
            return int(text)
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the run never reached step {step}")


def weights(workdir):
    with np.load(os.path.join(workdir, "final.npz")) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def checkpoint_steps(workdir):
    return sorted(int(p.rsplit("-", 1)[1].split(".")[0]) for p in glob.glob(os.path.join(workdir, "checkpoints", "ckpt-*.index")))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("whole")
    finish(run(workdir))
    return workdir


def test_kill_9_mid_epoch_then_resume_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    workdir = tmp_path / "killed"
    workdir.mkdir()
    proc = run(workdir, "slow")
    # mid-way through the second epoch, past a step checkpoint
    steps_done = wait_for_step(proc, workdir, STEPS_PER_EPOCH + 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = checkpoint_steps(workdir)
    assert saved and saved[-1] < STEPS_PER_EPOCH * EPOCHS

    finish(run(workdir))
    metrics = json.loads((workdir / "metrics.json").read_text())
    lost = steps_done - metrics["resumed_from_step"]
    assert 0 <= lost <= EVERY, (steps_done, metrics["resumed_from_step"])
    assert metrics["resumed_from_step"] % STEPS_PER_EPOCH != 0  # it really resumed mid-epoch
    diff = max(float(np.abs(a - b).max()) for a, b in zip(weights(workdir), weights(uninterrupted)))
    print(f"killed at step {steps_done}, resumed from step {metrics['resumed_from_step']} "
          f"(lost {lost}), max weight difference vs uninterrupted: {diff:.3g}")
    assert diff <= 1e-6


def test_ctrl_c_saves_the_current_step_and_the_rerun_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    workdir = tmp_path / "interrupted"
    workdir.mkdir()
    proc = run(workdir, "slow")
    wait_for_step(proc, workdir, STEPS_PER_EPOCH + 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    message = err.strip().splitlines()[-1]
    assert message.startswith("interrupted at step ") and "run the same command to resume" in message
    step = int(message.split()[3].rstrip(":"))
    assert checkpoint_steps(workdir)[-1] == step  # the checkpoint of the very step it stopped at

    finish(run(workdir))
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == step
    diff = max(float(np.abs(a - b).max()) for a, b in zip(weights(workdir), weights(uninterrupted)))
    assert diff <= 1e-6, diff


def test_corrupt_newest_checkpoint_is_refused_for_evaluation_unless_asked_then_the_older_is_named(uninterrupted, tmp_path):
    """Training resumes past an unreadable newest checkpoint (test_kill_9 covers resuming); a
    command that reads the model refuses it with one line naming the older checkpoint and the flag,
    and with the flag uses the older one and records which."""
    import shutil

    workdir = tmp_path / "corrupt"
    shutil.copytree(uninterrupted, workdir)
    steps = checkpoint_steps(workdir)
    newest, older = steps[-1], steps[-2]
    data_file = glob.glob(str(workdir / "checkpoints" / f"ckpt-{newest}.data-*"))[0]
    with open(data_file, "r+b") as f:
        f.truncate(100)  # a truncated write
    load = ("import sys; from pcl_tf import workdir as workdirs; "
            "m, _ = workdirs.load_trained(sys.argv[1], allow_older_checkpoint=sys.argv[2] == '1'); "
            "print(m.restored_checkpoint)")
    check = subprocess.run([sys.executable, "-c", load, str(workdir), "1"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr[-2000:]
    assert f"ckpt-{newest}" in check.stderr and "cannot be read" in check.stderr
    assert check.stdout.strip() == str({"name": f"ckpt-{older}", "step": older, "newest": False})

    before = sorted(os.listdir(workdir))
    attack = subprocess.run([sys.executable, "-m", "pcl_tf.cli.attack", f"--workdir={workdir}", "--method=fgsm"],
                            capture_output=True, text=True, timeout=180)
    errors = [line for line in attack.stderr.splitlines() if line.startswith("pcl-attack: error:")]
    assert attack.returncode == 2 and len(errors) == 1, attack.stderr[-2000:]
    assert f"ckpt-{older}" in errors[0] and "--allow_older_checkpoint" in errors[0]
    assert "Traceback" not in attack.stderr and sorted(os.listdir(workdir)) == before
