"""Help and flag errors answer before TensorFlow is imported: it takes seconds to load and prints
start-up noise, and a user asking for --help or mistyping a flag should pay for neither.

Each case runs the command's real entry point in a fresh process and reports, at exit, whether
TensorFlow was ever imported."""

import os
import subprocess
import sys

import pytest

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
PROBE = ("import atexit, sys; atexit.register(lambda: sys.stderr.write("
         "'\\nTENSORFLOW LOADED\\n' if 'tensorflow' in sys.modules else '\\nTENSORFLOW NOT LOADED\\n')); "
         "sys.argv = ['{prog}'] + sys.argv[1:]; from pcl_tf.cli.{module} import run; run()")

CASES = [
    ("train", ["--help"], 0, "--workdir"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--strategy=tpu"], 2, "--strategy=tpu"),
    ("train", ["--dataset=imagenet", "--workdir=run"], 2, "unknown dataset 'imagenet'"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.train.lr=abc"], 2, "could not convert"),
    ("train", ["--dataset=fmnist"], 2, "give --workdir"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.adv.eps_mn=0.1"], 2,
     "unknown config field 'eps_mn' in a --config.<field>=value override; did you mean \"eps_min\""),
    ("train", ["--config=configs/fmnist_cnn6.py", "--dataset=cifar10", "--workdir=run"], 2, "conflicts with the config"),
    ("train", ["--dataset=fmnist", "--show_config"], 0, "adv.start = 'joint'  # When the adversarial copies start"),
    ("export", ["--help"], 0, "--export_dir"),
    ("export", ["--workdir=run", "--export_dir=out"], 2, "does not exist"),
    ("data", ["--help"], 0, "--raw_dir"),
    ("attack", ["--help"], 0, "--method"),
    ("attack", ["--workdir=run", "--method=deepfool"], 2, "unknown attack 'deepfool'"),
    ("attack", ["--workdir=run", "--eps=abc"], 2, "not a number"),
    ("attack", ["--compare=run", "--method=pgd"], 2, "--method would be ignored with --compare"),
    ("attack", ["--workdir=run", "--method="], 2, "--method is empty"),
]


@pytest.mark.parametrize("module, args, status, text", CASES, ids=[f"{m}:{' '.join(a)}" for m, a, _, _ in CASES])
def test_answers_without_importing_tensorflow(module, args, status, text, tmp_path):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(prog="pcl-" + module, module=module), *args],
                          capture_output=True, text=True, cwd=tmp_path if "--config=configs" not in " ".join(args) else REPO, timeout=120)
    assert proc.returncode == status, proc.stderr[-2000:]
    assert text in proc.stdout + proc.stderr
    assert "TENSORFLOW NOT LOADED" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr




def test_the_console_is_quiet_unless_verbosity_is_asked_for(tmp_path):
    """TensorFlow's start-up lines and the CUDA probe's error on a machine without a GPU are
    filtered: a refused run prints its one line and nothing else. --verbosity brings them back."""
    args = [sys.executable, "-m", "pcl_tf.cli.train", "--dataset=cifar10", "--workdir=run"]  # cifar10: not prepared
    env = {**os.environ, "TFDS_DATA_DIR": str(tmp_path / "empty")}
    env.pop("PCL_TF_TF_LOGS", None)
    quiet = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert quiet.returncode == 2 and quiet.stderr.splitlines() == [l for l in quiet.stderr.splitlines() if l.startswith("pcl-train: error:")]
    assert len(quiet.stderr.splitlines()) == 1, quiet.stderr
    loud = subprocess.run(args + ["--verbosity=0"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert loud.returncode == 2 and len(loud.stderr.splitlines()) > 1, loud.stderr
