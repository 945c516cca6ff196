"""Atomic file writes: a reader (or a killed run) sees the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from typing import Any, IO, Iterator

# Held while a file (or a group of files that belong together) is being written: a command that
# exits at once on Ctrl-C (pcl_tf.cli.common.exit_at_once_on_ctrl_c) takes it first, so it never
# leaves a temporary file behind or one file of a group without the other.
_WRITING = threading.RLock()


def write_group() -> threading.RLock:
    """``with io_utils.write_group(): ...`` keeps an immediate exit out until the block's writes
    (several files that must change together) are done."""
    return _WRITING


@contextlib.contextmanager
def open_atomic(path: str, mode: str = "w") -> Iterator[IO]:
    """A file object for a temporary file beside ``path``; on a clean exit it is fsynced and
    renamed over ``path``, on an exception removed (``path`` keeps its old content)."""
    with _WRITING:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
        try:
            # mkstemp makes the file 0600; a report or checkpoint index should get the permissions
            # any other file the user writes gets (0666 less the umask).
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def blocking_ancestor(path: str):
    """The nearest existing ancestor directory of ``path`` when it is not a writable directory
    (so ``path`` cannot be created there), else None."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    return None if os.path.isdir(parent) and _can_create_in(parent) else parent


def _can_create_in(directory: str) -> bool:
    """Whether a directory can really be made in ``directory``. ``os.access`` asks only about
    permission bits, which root passes everywhere: /proc, /sys or a root-squashed NFS mount say
    yes and then refuse the mkdir. An empty directory made and removed at once is the honest test."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".pcl_tf-write-probe-", dir=directory))
    except OSError:
        return False
    return True


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def write_text_atomic(path: str, text: str) -> None:
    """Writes ``text`` to a temporary file beside ``path``, fsyncs it, then renames it over ``path``."""
    with open_atomic(path) as f:
        f.write(text)


def write_json_atomic(path: str, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> Any:
    """The JSON in ``path``; a file that is not valid JSON (truncated, edited by hand) is a
    ValueError that names it."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); restore it "
                             "from a copy, or move it aside") from None
