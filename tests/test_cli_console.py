"""The commands show the library's log records as they used to print them: INFO as bare lines on
stdout, warnings as ``prog: message`` on stderr (pcl_tf/cli/common.py)."""

import logging

import pytest

from pcl_tf.cli import common


@pytest.fixture
def console():
    logger = logging.getLogger("pcl_tf")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    common.show_library_logs("pcl-attack")
    common.show_library_logs("pcl-attack")  # idempotent: one handler, not two
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def test_info_is_a_bare_stdout_line_and_a_warning_names_the_command(console, capsys):
    logging.getLogger("pcl_tf.evaluate_runs").info("report: %s.json", "runs/x/reports/whitebox")
    logging.getLogger("pcl_tf.journal").warning("ignoring the unreadable evaluation journal %s", "j.npz")
    logging.getLogger("pcl_tf.journal").debug("not shown")
    out, err = capsys.readouterr()
    assert out == "report: runs/x/reports/whitebox.json\n"
    assert err == "pcl-attack: ignoring the unreadable evaluation journal j.npz\n"
