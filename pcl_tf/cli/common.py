"""What every pcl_tf command shares: help and flag errors before TensorFlow loads, quiet
TensorFlow logs, and one-line errors with exit 2.

A user who mistypes a flag or points at the wrong directory gets one line on stderr naming the
problem and what to do, exit status 2, and no traceback. Unexpected errors keep their traceback.
TensorFlow (seconds to import, and noisy) is imported only once the flags are parsed: the CLI
modules import nothing that imports it at module level (tests/test_cli_startup.py checks).
"""

from __future__ import annotations

import importlib
import logging as std_logging
import os
import sys
import tempfile
import types
from typing import Callable, Dict, Sequence, Tuple, Type

# --verbosity=N (any value, given explicitly) or PCL_TF_TF_LOGS=1 keeps every line TensorFlow's
# C++ side prints, for bug reports; by default they are filtered.
SHOW_TF_LOGS = os.environ.get("PCL_TF_TF_LOGS", "") not in ("", "0")
# TensorFlow's known start-up noise on a machine without a GPU: printed by its C++ side straight
# to file descriptor 2 while it loads (before any log level applies), then the CUDA probe's error.
# "oneDNN custom operations are on" appears only on CPUs where TensorFlow turns oneDNN on by
# default (e.g. with AVX-512 VNNI), twice per import.
_STARTUP_NOISE = ("All log messages before absl::InitializeLog", "cudart_stub.cc", "cuda_platform.cc",
                  "cpu_feature_guard.cc", "To enable the following instructions", "rebuild TensorFlow with",
                  "oneDNN custom operations are on")


def import_tensorflow_quietly(show: bool = False) -> None:
    """Imports TensorFlow with its start-up lines filtered out of stderr; anything else it
    prints while loading is passed through. The CUDA probe's error (printed at first device use,
    level ERROR) is silenced by TF_CPP_MIN_LOG_LEVEL=3. ``show`` leaves all of it alone."""
    if show:
        return
    # Level 3 even where the environment says 2 (as many setups do): at 2 the CUDA probe's
    # "failed call to cuInit" ERROR line still reaches the console of every CPU-only machine.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(noise in line for noise in _STARTUP_NOISE):
                    sys.stderr.write(line)


from absl import app, flags, logging  # noqa: E402

def lazy_module(name: str) -> types.ModuleType:
    """A stand-in for ``import name`` that imports the module at its first attribute use. The
    CLIs name their library modules this way: those import TensorFlow, which must wait until the
    flags are parsed and checked."""

    class _Lazy(types.ModuleType):
        def __getattr__(self, attribute):
            return getattr(importlib.import_module(name), attribute)

    return _Lazy(name)


# Exceptions of the library that mean "the user asked for something that cannot work".
USAGE_ERRORS: Tuple[Type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError)


def fail(prog: str, message: str, status: int = 2) -> None:
    """Prints ``prog: error: message`` (one line) to stderr and exits with ``status``
    (2: bad input; other codes for failures of the run itself)."""
    first_line = " ".join(str(message).split())
    sys.stderr.write(f"{prog}: error: {first_line}\n")
    sys.stderr.flush()
    sys.exit(status)


# The socket pair of exit_at_once_on_ctrl_c (kept referenced: the signal handler writes into it).
_CTRL_C_WAKEUP = []


def exit_at_once_on_ctrl_c(prog: str, message: str) -> None:
    """Makes Ctrl-C end this process within moments, with ``prog: message`` and exit 130, for a
    command whose work is saved as it goes (pcl-attack's journal keeps every finished batch).

    A Python signal handler runs only when the main thread is back in Python, and one batch of a
    strong attack keeps it inside TensorFlow for minutes. Python's C-level handler, though, writes
    the signal's number to the wakeup file descriptor at once; a watcher thread reading it exits
    the process, after any file being written is complete (``io_utils.write_group``). Main thread
    only (``signal.set_wakeup_fd``)."""
    import signal
    import socket
    import threading

    from pcl_tf import io_utils

    reader, writer = socket.socketpair()
    writer.setblocking(False)
    _CTRL_C_WAKEUP[:] = [reader, writer]
    # The watcher acts; the main thread must not also raise KeyboardInterrupt mid-write.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def watch():
        while True:
            received = reader.recv(64)  # the numbers of the signals that arrived, one byte each
            if not received:
                return
            if signal.SIGINT in received:
                break
        with io_utils.write_group():
            sys.stderr.write(("\n" if sys.stderr.isatty() else "") + f"{prog}: {message}\n")
            sys.stderr.flush()
            os._exit(130)  # at once: no clean-up handler may wait for TensorFlow's running op

    threading.Thread(target=watch, name="ctrl-c", daemon=True).start()


def _last_line(error: BaseException) -> str:
    """The line that says what went wrong. ml_collections wraps a config file's exception with
    its whole traceback; keep the flag it concerns and the exception's own last line. A KeyError's
    str() is the repr of its message (quotes and a literal "\\n"), so its message is read instead,
    also where ml_collections wraps it in an AttributeError (an unknown --config.<field>)."""
    while len(error.args) == 1 and isinstance(error.args[0], BaseException):
        error = error.args[0]
    text = error.args[0] if isinstance(error, KeyError) and error.args and isinstance(error.args[0], str) else str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if len(lines) == 1:
        return lines[0]
    head = lines[0].split(": Error whilst", 1)[0] if lines[0].startswith("flag --") else lines[0]
    return f"{head}: {lines[-1]}"


def resolved_config(value, flag: str = "--config"):
    """``FLAGS.config`` loads lazily: a missing or broken config file surfaces at the first
    attribute read, deep inside the library. Read it here and say what is wrong in one line."""
    try:
        value.to_dict()  # touches every field
        return value
    except (AttributeError, KeyError) as e:
        raise ValueError(f"{flag}: unknown config field {_last_line(e)}; see the config file for the fields") from None
    except Exception as e:  # noqa: BLE001 - the file itself could not be loaded
        raise ValueError(f"{flag}: {_last_line(e)}") from None


def make_flags_parser(prog: str) -> Callable[[Sequence[str]], Sequence[str]]:
    """An absl ``flags_parser`` that turns flag errors (bad values, unknown config fields) into
    one line and exit 2 instead of absl's usage dump."""

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except Exception as e:  # noqa: BLE001 - any failure to parse the command line is a usage error
            message = _last_line(e)
            if "has no attribute 'get_config'" in str(e):
                fail(prog, "the --config file defines no get_config(); a config file defines get_config(variants='') "
                           "returning an ml_collections.ConfigDict, e.g. configs/fmnist_cnn6.py")
            if isinstance(e, (AttributeError, KeyError)):  # an override of a field the config lacks
                name, _, hint = message.partition(": ")  # ml_collections' "Did you mean ...?", where it has one
                message = f"unknown config field {name} in a --config.<field>=value override" + (
                    f"; {hint[0].lower()}{hint[1:]}" if hint else "")
            fail(prog, f"{message} (see {prog} --helpfull)")

    return parse


def _print_help(main: Callable, prog: str) -> None:
    """The command's docstring and its own flags. absl's --help lists the flags of ``__main__``
    only, which for a console script is the launcher: it printed just "Try --helpfull"."""
    module = sys.modules[main.__module__]
    sys.stdout.write((module.__doc__ or prog).strip() + "\n\nflags:\n")
    sys.stdout.write(flags.FLAGS.module_help(module) + "\n")
    if "config" in flags.FLAGS and flags.FLAGS.find_module_defining_flag("config") == module.__name__:
        sys.stdout.write("\nEvery config field, its value and what it means: --show_config (with --config or "
                         "--dataset); the variants are described in configs/common.py. Set any field with "
                         "--config.<field>=value.\n")


class _ConsoleHandler(std_logging.Handler):
    """Shows the library's log records (the ``pcl_tf`` loggers) as the commands print: INFO (progress,
    where a report was written) as bare lines on stdout, WARNING and above as ``prog: message`` on
    stderr. The streams are looked up at each record, so a redirected ``sys.stdout`` is honoured."""

    def __init__(self, prog: str):
        super().__init__(std_logging.INFO)
        self.prog = prog

    def emit(self, record: std_logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= std_logging.WARNING:
                stream, line = sys.stderr, f"{self.prog}: {message}"
            else:
                stream, line = sys.stdout, message
            stream.write(line + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never take the command down
            self.handleError(record)


def show_library_logs(prog: str) -> None:
    """Routes the library's ``pcl_tf`` loggers to the console through :class:`_ConsoleHandler`
    (and not on to absl's handler, which would prefix every line with a level, time and file)."""
    logger = std_logging.getLogger("pcl_tf")
    for handler in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
        logger.removeHandler(handler)
    logger.addHandler(_ConsoleHandler(prog))
    logger.setLevel(std_logging.INFO)
    logger.propagate = False


def run(
    main: Callable,
    prog: str,
    errors: Tuple[Type[BaseException], ...],
    exits: Callable[[], Dict[str, Tuple[Type[BaseException], ...]]] = dict,
    check_flags: Callable[[], None] = lambda: None,
) -> None:
    """``absl.app.run(main)`` where the library's usage ``errors`` become one line and exit 2.
    ``exits`` returns (called once TensorFlow may load, since these classes live in modules that
    import it) ``failures`` of the run (e.g. a diverged training: one line, exit 3) and
    ``interruptions`` (Ctrl-C caught by the library after saving its state: one line, exit 130,
    as a shell reports SIGINT). ``check_flags`` (cheap checks of the flags' values and paths that
    raise one of ``errors``) runs before TensorFlow is imported."""

    if any(arg in ("--help", "-h", "--helpshort", "-?") for arg in sys.argv[1:]):
        try:
            _print_help(main, prog)
            sys.stdout.flush()
        except BrokenPipeError:  # `pcl-train --help | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)

    def guarded(argv):
        if not flags.FLAGS["verbosity"].present:
            # TFDS logs every dataset it opens at INFO; keep the console for progress and results.
            logging.set_verbosity(logging.WARNING)
        show_library_logs(prog)
        try:
            check_flags()
        except errors as e:
            fail(prog, e)
        # The flags are good: now the seconds of TensorFlow's import.
        import_tensorflow_quietly(show=SHOW_TF_LOGS or flags.FLAGS["verbosity"].present)
        exit_classes = exits()
        failures, interruptions = exit_classes.get("failures", ()), exit_classes.get("interruptions", ())
        try:
            return main(argv)
        except interruptions as e:
            fail(prog, e, status=130)
        except failures as e:
            fail(prog, e, status=3)
        except errors as e:
            fail(prog, e)
        except OSError as e:  # a path given on the command line that cannot be used
            if e.filename is None:
                raise
            fail(prog, f"cannot use {e.filename}: {e.strerror or e}; check the path (a directory where one is "
                       "expected, writable, on a file system with room) or choose another")

    app.run(guarded, flags_parser=make_flags_parser(prog))
