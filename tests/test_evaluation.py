"""pcl_tf.evaluation helpers that need no model."""

from pcl_tf import evaluation


def test_progress_off_a_terminal_is_plain_lines(capsys):
    """Under pytest (as in a log file or a pipe) stdout is no terminal: no carriage returns or
    backspaces, which fill log files with control characters."""
    bar = evaluation.progress_bar(100)
    for done in (10, 50, 100):
        bar.update(done)
    out = capsys.readouterr().out
    assert "100/100" in out and "\r" not in out and "\b" not in out
