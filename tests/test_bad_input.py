"""Bad input to every command: exit status 2, one line on stderr that names the problem and
what to do, no traceback, and nothing written or overwritten.

Each row is a real invocation in a fresh process, in an empty directory (plus the files the
case needs). The table in the issue notes is this list. The cases that need a trained work dir
(an unwritable or existing export version) are in tests/test_export.py.
"""

import json
import os
import subprocess
import sys

import pytest

FMNIST = os.path.join(os.path.dirname(__file__), os.pardir, "configs", "fmnist_cnn6.py")


def workdir_of_seed(root, seed):
    """A work dir whose config.json is the default F-MNIST config but for its seed."""
    from pcl_tf.configs import fmnist_cnn6

    config = fmnist_cnn6.get_config()
    config.seed = seed
    os.makedirs(os.path.join(root, "run"))
    with open(os.path.join(root, "run", "config.json"), "w") as f:
        json.dump(config.to_dict(), f)


def other_dataset_workdir(root):
    os.makedirs(os.path.join(root, "run"))
    with open(os.path.join(root, "run", "config.json"), "w") as f:
        json.dump({"dataset": "cifar10", "model": "resnet20", "pcl": {"branches": ""}}, f)


def not_a_workdir(root):
    os.makedirs(os.path.join(root, "run"))


def corrupt_config_json(root):
    os.makedirs(os.path.join(root, "run"))
    with open(os.path.join(root, "run", "config.json"), "w") as f:
        f.write('{"dataset": ')


def a_file(root):
    with open(os.path.join(root, "file"), "w") as f:
        f.write("x")


def junk_idx_files(root):
    os.makedirs(os.path.join(root, "raw"))
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with open(os.path.join(root, "raw", name), "wb") as f:
            f.write(b"not an IDX file")


CASES = [
    # (command, arguments, setup, a piece of the expected message)
    ("train", ["--dataset=imagenet", "--workdir=run"], None, "unknown dataset 'imagenet'"),
    ("train", ["--dataset=fmnist"], None, "give --workdir"),
    ("train", ["--workdir=run"], None, "give --dataset"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.train.epochs=-1"], None, "config.train.epochs=-1 must be > 0"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.train.lr=abc"], None, "could not convert string to float"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.no_such_field=3"], None, "unknown config field"),
    ("train", [f"--config={FMNIST}:fast", "--workdir=run"], None, "unknown config variant 'fast'"),
    ("train", ["--config=/no/such/config.py", "--workdir=run"], None, "No such file"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.model=resnet9"], None, "unknown model 'resnet9'"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.pcl.branches=fc4096"], None, "no tap 'fc4096'"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.adv.method=pgd", "--config.adv.eps_min=-0.1"], None,
     "0 <= eps_min"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--strategy=tpu"], None, "--strategy=tpu"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--cpu_devices=-1"], None, "--cpu_devices=-1"),
    ("train", ["--dataset=fmnist", "--workdir=run"], other_dataset_workdir, "holds a cifar10/resnet20 run"),
    ("train", ["--dataset=cifar10", "--workdir=run", "--data_dir=tfds"], None, "cifar10 3.0.2 is not prepared"),
    ("train", [f"--config={FMNIST}", "--dataset=cifar10", "--workdir=run"], None, "conflicts with the config"),
    ("train", [f"--config={FMNIST}:smoke", "--workdir=file/run"], a_file, "cannot create the work dir file/run"),
    ("train", [f"--config={FMNIST}:smoke", "--workdir=file"], a_file, "cannot create the work dir file: it is a file"),
    ("train", [f"--config={FMNIST}:smoke", "--workdir=run", "--config.train.warmup_epochs=2"], None,
     "warmup_epochs (2) must be < config.train.epochs (2)"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.train.schedule_scale=0"], None,
     "schedule_scale=0.0 must be > 0"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.adv.start=later"], None, "joint or first_step"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.train.snapshot_epochs=(400,)"], None,
     "400 is not an epoch of this run"),
    ("train", ["--dataset=fmnist", "--workdir=run"], lambda root: workdir_of_seed(root, 5),
     "other settings (seed 5 -> 0)"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.eval.num_examples=20000"], None,
     "config.eval.num_examples=20000 is more than the 10000 images of fashion_mnist's test split"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.train.momentum=-1"], None,
     "config.train.momentum=-1.0 must be in [0, 1)"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.pcl.centroid_optimizer=sgdd"], None,
     "config.pcl.centroid_optimizer='sgdd'"),
    ("train", ["--config=noget.py", "--workdir=run"], lambda root: open(os.path.join(root, "noget.py"), "w").write("x = 1\n"),
     "defines no get_config()"),
    ("attack", ["--workdir=run"], corrupt_config_json, "run/config.json is not valid JSON"),
    ("attack", ["--compare=run", "--method=pgd"], None, "--method would be ignored with --compare"),
    ("attack", ["--workdir=a,b", "--transfer", "--source_workdir=c"], None, "--source_workdir would be ignored with --transfer"),
    ("attack", ["--workdir=a,b", "--transfer", "--method=fgsm,pgd"], None, "give one --method"),
    ("attack", ["--workdir=run", "--method="], None, "--method is empty"),
    ("attack", ["--workdir=run", "--source_workdir=src", "--noaudit"], None, "--audit would be ignored"),
    ("attack", ["--workdir=run"], None, "work dir run does not exist"),
    ("attack", ["--workdir=run"], not_a_workdir, "has no config.json"),
    ("attack", ["--workdir=run", "--method=deepfool"], None, "unknown attack 'deepfool'"),
    ("attack", ["--workdir=run", "--eps=1.5"], None, "outside [0, 1]"),
    ("attack", ["--workdir=run", "--eps=-0.1"], None, "outside [0, 1]"),
    ("attack", ["--workdir=run", "--c=0"], None, "--c=0.0 must be > 0"),
    ("attack", ["--workdir=run", "--steps=0"], None, "--steps=0 must be > 0"),
    ("attack", ["--workdir=run", "--suite=paper", "--method=pgd"], None, "either --suite or --method"),
    ("attack", ["--workdir=run", "--output=file/report"], a_file, "cannot be written"),
    ("export", ["--workdir=run", "--export_dir=out"], None, "does not exist"),
    ("export", ["--workdir=run", "--export_dir=out", "--version=abc"], None, "--version"),
    ("export", ["--workdir=run", "--slim_copy=run"], not_a_workdir, "already exists"),
    ("export", ["--workdir=run", "--slim_copy=copy", "--export_dir=out"], not_a_workdir, "not both"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--strategy=multi_worker"], None, "needs TF_CONFIG"),
    ("train", ["--dataset=fmnist", "--workdir=run", "--config.mixed_precision=float8"], None,
     "config.mixed_precision='float8'"),
    ("data", ["--dataset=imagenet"], None, "unknown dataset 'imagenet'"),
    ("data", ["--dataset=fmnist", "--raw_dir=raw", "--data_dir=tfds"], junk_idx_files, "raw"),
]


def listing(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("command, args, setup, message", CASES,
                         ids=[f"{c}:{' '.join(a)[:60]}" for c, a, _, _ in CASES])
def test_bad_invocation(command, args, setup, message, tmp_path):
    status, line, unchanged, stderr = _run_case(command, args, setup, str(tmp_path))
    assert status == 2, stderr[-2000:]
    assert line.startswith(f"pcl-{command}: error:") and message in line, stderr[-2000:]
    assert "Traceback" not in stderr
    assert unchanged  # nothing written or overwritten


@pytest.mark.parametrize("command, flag", [("train", "--workdir"), ("attack", "--method"), ("export", "--export_dir")])
def test_help_lists_the_commands_own_flags(command, flag, tmp_path):
    """absl's --help printed only "Try --helpfull" for the console scripts."""
    proc = subprocess.run([sys.executable, "-m", f"pcl_tf.cli.{command}", "--help"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert flag in proc.stdout and "Try --helpfull" not in proc.stdout
    assert os.listdir(tmp_path) == []


def _run_case(command, args, setup, root):
    """One row of the table: a fresh process in an empty directory; returns (status, the error
    line, whether the directory is unchanged, all of stderr)."""
    if setup:
        setup(root)
    before = listing(root)
    proc = subprocess.run([sys.executable, "-m", f"pcl_tf.cli.{command}", *args], capture_output=True, text=True,
                          cwd=root, timeout=300, env={**os.environ, "TFDS_DATA_DIR": os.path.join(root, "tfds")})
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"pcl-{command}: error:")]
    line = errors[0] if len(errors) == 1 else proc.stderr.strip()[-300:]
    return proc.returncode, line, listing(root) == before, proc.stderr


if __name__ == "__main__":
    # The table of the issue notes: `python tests/test_bad_input.py` runs every row once more and
    # prints it as Markdown (the assertions are the test's; this only shows what the user sees).
    import tempfile

    print("| # | command | exit | the one line printed | nothing written |")
    print("|---|---|---|---|---|")
    for number, (command, args, setup, _) in enumerate(CASES, 1):
        with tempfile.TemporaryDirectory() as root:
            status, line, unchanged, _ = _run_case(command, args, setup, root)
        shown = " ".join(args).replace("|", "\\|")
        print(f"| {number} | `pcl-{command} {shown}` | {status} | {line.replace('|', '/')} | {'yes' if unchanged else 'NO'} |",
              flush=True)
