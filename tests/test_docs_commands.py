"""The pcl-train commands printed in README.md, BUILD.md and docs/ still name configs, variants
and fields that exist: each one's config is resolved (with --show_config, which needs no
TensorFlow and trains nothing), so a renamed variant or field fails here rather than in a
user's terminal."""

import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
DOCS = ["README.md", "BUILD.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
COMMAND = re.compile(r"^ {4}pcl-train (.*)$")
# Flags that say where to write, not what to train: dropped, since --show_config neither needs nor checks them.
OUTPUT_FLAGS = ("--workdir", "--export_dir", "--data_dir")


def documented_commands():
    found = []
    for doc in DOCS:
        with open(os.path.join(REPO, doc), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                match = COMMAND.match(line.rstrip("\n"))
                if match:
                    args = shlex.split(match.group(1), comments=True)
                    found.append((f"{doc}:{number}", [a for a in args if not a.startswith(OUTPUT_FLAGS)]))
    return found


COMMANDS = documented_commands()


def test_the_docs_print_pcl_train_commands():
    """The collector finds the README's commands (a change to the docs' layout must not silently
    leave the test below with nothing to check)."""
    assert sum(where.startswith("README.md:") for where, _ in COMMANDS) >= 3


@pytest.mark.parametrize("where, args", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_documented_pcl_train_command_resolves_its_config(where, args):
    proc = subprocess.run([sys.executable, "-m", "pcl_tf.cli.train", *args, "--show_config"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, f"{where}: {proc.stderr[-1500:]}"
    assert "Traceback" not in proc.stderr
