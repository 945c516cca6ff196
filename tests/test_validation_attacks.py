"""bench/validation_attacks.py: its table and its refusals (the measurement itself is
RobustValidation.measure, tested in tests/test_early_stopping.py)."""

import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "bench")
sys.path.insert(0, BENCH)

import validation_attacks  # noqa: E402


def test_table_puts_each_attack_side_by_side_with_the_difference_and_the_seconds():
    def attack(steps, robust, seconds):
        return {"steps": steps, "seconds": seconds, "val_clean_accuracy": 0.9, "val_fgsm_accuracy": 0.8,
                "val_robust_accuracy": robust}

    rows = [{"workdir": "runs/a", "n": 1000, "eps": 0.1,
             "attacks": {"pgd": attack(10, 0.8, 12.0), "apgd-ce:100": attack(100, 0.752, 88.4)}}]
    lines = validation_attacks.table(rows, ["pgd", "apgd-ce:100"]).splitlines()
    assert lines[0] == ("| work dir | n | ε | clean | FGSM | pgd (10 it.) | apgd-ce (100 it.) | apgd-ce:100 − pgd | "
                        "seconds (pgd / apgd-ce:100) |")
    assert lines[2] == ("| runs/a | 1000 | 0.1 | 90.0 [88.0, 91.7] | 80.0 [77.4, 82.4] | 80.0 [77.4, 82.4] | "
                        "75.2 [72.4, 77.8] | -4.8 | 12 / 88 |")


@pytest.mark.parametrize("args, message", [
    (["--workdirs=nowhere"], "no work dir nowhere; give pcl-train work dirs"),
    (["--workdirs=.", "--attacks=pgd,square"], "--attacks: 'square' is not an attack: give NAME or NAME:ITERATIONS"),
    (["--workdirs=.", "--attacks=apgd-ce:0"], "--attacks: 'apgd-ce:0' is not an attack"),
    (["--workdirs=.", "--examples=0"], "--examples=0 must be a positive number of images"),
    (["--out-blocked"], "cannot be written"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    out = tmp_path / "out.json"
    if args == ["--out-blocked"]:  # the JSON's folder is a file: refused before any measuring
        (tmp_path / "file").write_text("")
        args, out = ["--workdirs=."], tmp_path / "file" / "out.json"
    done = subprocess.run([sys.executable, os.path.join(BENCH, "validation_attacks.py"), *args, f"--out={out}"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()
