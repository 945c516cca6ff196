"""Atomic writes: the new content or the old, never half a file, and ordinary permissions."""

import os
import stat

import pytest

from pcl_tf import io_utils


def test_write_replaces_the_file(tmp_path):
    path = tmp_path / "report.json"
    io_utils.write_json_atomic(str(path), {"a": 1})
    io_utils.write_json_atomic(str(path), {"a": 2})
    assert io_utils.read_json(str(path)) == {"a": 2}
    assert os.listdir(tmp_path) == ["report.json"]


def test_an_exception_keeps_the_old_content_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "report.md"
    io_utils.write_text_atomic(str(path), "old\n")
    with pytest.raises(RuntimeError):
        with io_utils.open_atomic(str(path)) as f:
            f.write("half of the new")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["report.md"]


def test_files_get_the_umask_permissions_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        io_utils.write_text_atomic(str(tmp_path / "shared.md"), "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "shared.md").st_mode) == 0o644


def test_blocking_ancestor_names_what_stops_a_path_from_being_created(tmp_path):
    from pcl_tf import io_utils

    (tmp_path / "file").write_text("x")
    assert io_utils.blocking_ancestor(str(tmp_path / "file" / "run")) == str(tmp_path / "file")
    assert io_utils.blocking_ancestor(str(tmp_path / "new" / "deeper" / "run")) is None
    assert os.listdir(tmp_path) == ["file"]  # the probe leaves nothing behind


def test_blocking_ancestor_is_not_fooled_by_permission_bits_root_passes():
    """As root ``os.access('/proc', W_OK)`` is true, yet nothing can be made there."""
    from pcl_tf import io_utils

    assert io_utils.blocking_ancestor("/proc/no-such-process/report.json") == "/proc"
