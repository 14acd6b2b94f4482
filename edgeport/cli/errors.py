"""How every command ends: an EdgeportError as one line and its exit code, Ctrl-C and SIGTERM as
one line and 128 + the signal number, anything else as one "internal error" line. Commands that
run libraries (convert, verify) also keep their output off the terminal unless ``--debug``
(:mod:`edgeport.core.quiet`)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

import click

from edgeport.core import quiet
from edgeport.core.errors import EdgeportError, describe_exception

EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM exits 143


def _print_error(message: str) -> None:
    click.echo(f"edgeport: error: {message}", file=quiet.terminal())


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM handler: raise KeyboardInterrupt like Ctrl-C, so that every ``finally`` and
    ``with`` block runs (the bundle's temporary folder is removed, converter children killed)."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (then the previous handler is back).

    Handlers can only be set from the main thread; a process that handles SIGTERM itself
    (an embedding application) keeps its handler.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def handle_errors(func: Callable | None = None, *, capture: bool = False) -> Callable:
    """Turn EdgeportError into one line on stderr and its exit code (a traceback only with --debug).

    Ctrl-C (SIGINT) and SIGTERM end the command with one line and exit code 128 + the signal
    number (130, 143), after the cleanup of anything half-written. With ``capture``, what the
    libraries write on stderr goes to a log (the bundle's ``logs/runtime.log``) instead of the
    terminal, unless the command's ``--debug`` is given.
    """
    if func is None:
        return lambda f: handle_errors(f, capture=capture)

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug", False)
        with quiet.debug_mode(debug), quiet.captured(enabled=capture):
            return _run_handled(func, debug, args, kwargs)

    return wrapper


def _run_handled(func: Callable, debug: bool, args: tuple, kwargs: dict[str, Any]) -> Any:
    """Run the command; end it with one line and an exit code on errors (see handle_errors)."""
    try:
        with _sigterm_as_interrupt():
            return func(*args, **kwargs)
    except EdgeportError as exc:
        if debug:
            raise
        _print_error(exc.one_line())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        name = "SIGTERM" if str(exc) == "SIGTERM" else "SIGINT"
        _print_error(f"interrupted ({name}); nothing was written")
        sys.exit(128 + signal.Signals[name].value)
    except Exception as exc:  # a bug in edgeport or a library: still one line by default
        if debug:
            raise
        _print_error(f"internal error: {describe_exception(exc)} (run again with --debug for the traceback)")
        sys.exit(1)
