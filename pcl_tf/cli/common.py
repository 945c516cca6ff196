"""What every pcl_tf command shares: quiet TensorFlow logs, and one-line errors with exit 2.

A user who mistypes a flag or points at the wrong directory gets one line on stderr naming the
problem and what to do, exit status 2, and no traceback. Unexpected errors keep their traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence, Tuple, Type

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import app, flags, logging  # noqa: E402

USAGE_ERRORS: Tuple[Type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError)


def fail(prog: str, message: str, status: int = 2) -> None:
    """Prints ``prog: error: message`` (one line) to stderr and exits with ``status``
    (2: bad input; other codes for failures of the run itself)."""
    first_line = " ".join(str(message).split())
    sys.stderr.write(f"{prog}: error: {first_line}\n")
    sys.stderr.flush()
    sys.exit(status)


def make_flags_parser(prog: str) -> Callable[[Sequence[str]], Sequence[str]]:
    """An absl ``flags_parser`` that turns flag errors (bad values, unknown config fields) into
    one line and exit 2 instead of absl's usage dump."""

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(prog, f"{e} (see {prog} --helpfull)")
        except USAGE_ERRORS as e:  # raised by config files, e.g. an unknown variant
            fail(prog, e)

    return parse


def run(
    main: Callable,
    prog: str,
    errors: Tuple[Type[BaseException], ...],
    failures: Tuple[Type[BaseException], ...] = (),
) -> None:
    """``absl.app.run(main)`` where the library's usage ``errors`` become one line and exit 2,
    and run ``failures`` (e.g. a diverged training) one line and exit 3."""

    def guarded(argv):
        if not flags.FLAGS["verbosity"].present:
            # TFDS logs every dataset it opens at INFO; keep the console for progress and results.
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except failures as e:
            fail(prog, e, status=3)
        except errors as e:
            fail(prog, e)

    app.run(guarded, flags_parser=make_flags_parser(prog))
