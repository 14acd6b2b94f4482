"""Quiet by default: the libraries edgeport drives (TensorFlow, absl, oneDNN, onnx2tf,
coremltools, ONNX Runtime) write nothing to the user's terminal unless ``--debug`` is given.

Two means, both here:

- **log levels, before import**: :data:`QUIET_ENV` (:func:`apply_env`, run by
  ``edgeport/__init__`` before any heavy import and given to converter children). They change
  what is logged, never what is computed (``TF_ENABLE_ONEDNN_OPTS`` is left alone).
- **capture at the file-descriptor level**: TensorFlow 2.16+ logs through absl from C++ and
  ignores ``TF_CPP_MIN_LOG_LEVEL`` for its start-up lines (``WARNING: All log messages before
  absl::InitializeLog() ...``, ``oneDNN custom operations are on ...``), so the CLI points fd 2
  at a log file for the whole command (:func:`captured`). Python's ``sys.stderr``, warnings,
  library loggers and child processes follow fd 2 into it; edgeport's own lines (progress,
  the error line) go to :func:`terminal`, the saved original stderr. The pipeline copies the
  log into the bundle (:data:`BUNDLE_LOG`) and the report counts its lines
  (:func:`runtime_note`).

``--debug`` (:func:`debug_mode`, also ``EDGEPORT_DEBUG=1`` for children) turns all of it off.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import TextIO

# Log levels read by the libraries at import (a user's own setting wins: setdefault).
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's C++ logging: errors only
    "TF_CPP_MIN_VLOG_LEVEL": "0",
    "GRPC_VERBOSITY": "ERROR",  # gRPC, linked into TensorFlow
    "GLOG_minloglevel": "2",  # glog-style logging of the C++ libraries
    "ABSL_MIN_LOG_LEVEL": "2",
    "TF_USE_LEGACY_KERAS_WARNING": "0",
}
DEBUG_ENV = "EDGEPORT_DEBUG"
BUNDLE_LOG = "logs/runtime.log"
FIRST_LINES = 3

# What edgeport itself writes on stderr (tests/cli/test_quiet.py checks every line against it):
# progress lines ("  ... step", "  done step (1.2 s)", "  failed step (0.3 s)") and "edgeport: ..." lines.
STDERR_PREFIXES = ("  ... ", "  done ", "  failed ", "edgeport: ")

# A progress bar's redraw (tqdm: "Running MIL passes:  40%|####  | 4/10 [00:01<00:02, 3.1 it/s]"):
# kept out of the runtime messages, which are about warnings.
_PROGRESS_BAR = re.compile(r"\d+%\||\[\d+:\d+[^\]]*(/s|/it)\]\s*$")

_applied: set[str] = set()  # the QUIET_ENV names apply_env set in os.environ (not the user's)


def debug_enabled() -> bool:
    """True when ``--debug`` (or ``EDGEPORT_DEBUG=1``) asks for the libraries' own output."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


@contextlib.contextmanager
def debug_mode(on: bool) -> Iterator[None]:
    """Within the block, ``--debug`` is on for this process and its children (the environment
    carries it) when ``on``; the previous setting is back afterwards."""
    if not on:
        yield
        return
    previous = os.environ.get(DEBUG_ENV)
    os.environ[DEBUG_ENV] = "1"
    for name in _applied:  # the libraries imported from here on log at their own levels
        if os.environ.get(name) == QUIET_ENV[name]:
            del os.environ[name]
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = previous


def apply_env(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set the quiet log levels in ``env`` (default: this process's environment) unless
    ``--debug`` is on; a value already set wins. Returns ``env``."""
    target = os.environ if env is None else env
    if target.get(DEBUG_ENV, "") in ("", "0"):
        for name, value in QUIET_ENV.items():
            if name not in target:
                target[name] = value
                if env is None:
                    _applied.add(name)
    return target


class Capture:
    """fd 2 of this process redirected to a log file until :meth:`stop`; edgeport's own lines
    go to :attr:`terminal` (a stream on the original stderr)."""

    def __init__(self) -> None:
        handle, name = tempfile.mkstemp(prefix="edgeport-runtime-", suffix=".log")
        self.path = Path(name)
        sys.stderr.flush()
        self._saved = os.dup(2)
        os.dup2(handle, 2)
        os.close(handle)
        # sys.stderr writes fd 2 (into the log now); edgeport's own lines take this stream. When
        # sys.stderr is not fd 2 (click's CliRunner, an embedding application) it is left as it is.
        self._own_terminal = _writes_fd2(sys.stderr)
        self.terminal: TextIO = (
            open(os.dup(self._saved), "w", buffering=1, errors="replace")  # noqa: SIM115
            if self._own_terminal
            else sys.stderr
        )

    def append(self, label: str, text: str) -> None:
        """Add a child process's output (``label`` names it) to the log."""
        text = "\n".join(line for line in text.replace("\r", "\n").splitlines() if message_line(line))
        if text:  # on fd 2 itself: sys.stderr may be another stream (CliRunner)
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.write(2, f"--- {label} ---\n{text.rstrip()}\n--- end of {label} ---\n".encode(errors="replace"))

    def lines(self) -> list[str]:
        """The log's non-empty lines so far."""
        sys.stderr.flush()
        try:
            text = self.path.read_text(errors="replace")
        except OSError:
            return []
        return [line.rstrip() for line in text.replace("\r", "\n").splitlines() if message_line(line)]

    def stop(self) -> None:
        """Give fd 2 back and remove the log file."""
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        if self._own_terminal:
            with contextlib.suppress(OSError, ValueError):
                self.terminal.close()
        self.path.unlink(missing_ok=True)


def message_line(line: str) -> bool:
    """True for a line worth keeping: not blank, not a progress bar's redraw."""
    return bool(line.strip()) and not _PROGRESS_BAR.search(line)


def _counted(line: str) -> bool:
    """A message line, not the markers :meth:`Capture.append` puts around a child's output."""
    return not (line.startswith("--- ") and line.endswith(" ---"))


def _writes_fd2(stream: TextIO) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False


_active: Capture | None = None
_destination: Path | None = None


@contextlib.contextmanager
def captured(enabled: bool = True) -> Iterator[Capture | None]:
    """Capture this process's fd 2 into a log file for the block (nothing when ``enabled`` is
    false or ``--debug`` is on); nested blocks share the outer capture."""
    global _active, _destination
    if not enabled or debug_enabled() or _active is not None:
        yield _active
        return
    capture = Capture()
    _active = capture
    try:
        yield capture
    finally:
        _active, _destination = None, None
        capture.stop()


def active() -> Capture | None:
    """The capture in force, or None (the Python API, ``--debug``)."""
    return _active


def terminal() -> TextIO:
    """Where edgeport's own stderr lines go: the user's terminal even while fd 2 is captured."""
    return _active.terminal if _active is not None else sys.stderr


def append_log(label: str, text: str) -> None:
    """Add a child process's output to the captured log (dropped when nothing is captured)."""
    if _active is not None:
        _active.append(label, text)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Hide what C++ code writes on fd 2 during the block (a noisy import) when no capture is in
    force and ``--debug`` is off; inside a capture it lands in the log anyway."""
    if _active is not None or debug_enabled():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def note_destination(output_dir: Path | str | None) -> None:
    """Record where the bundle will go: a failure's log is kept beside it (:func:`keep_failure_log`);
    None when the run is over."""
    global _destination
    _destination = None if output_dir is None else Path(output_dir)


def keep_failure_log(log: Path) -> Path | None:
    """Copy a failed step's log beside where the bundle would have gone
    (``<output_dir>.failed.log``), so a hint can name a file that outlives the work folder.
    Returns its path, or None when no destination is known or it cannot be written."""
    with contextlib.suppress(OSError):
        append_log(f"failed step's log ({log.name})", log.read_text(errors="replace"))
    kept = _failure_log()
    if kept is None:
        return None
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, kept)
    except OSError:
        return None
    return kept


def _failure_log() -> Path | None:
    return None if _destination is None else _destination.with_name(_destination.name + ".failed.log")


def discard_failure_log() -> None:
    """Remove the kept failure log once the bundle is in place (a step that failed was retried
    another way and the run succeeded; its text is in the bundle's log)."""
    kept = _failure_log()
    if kept is not None:
        kept.unlink(missing_ok=True)


def runtime_note() -> str | None:
    """The report's "runtime messages" note: how many lines the libraries wrote (captured in
    :data:`BUNDLE_LOG`) and the first ones; None when nothing was captured or written."""
    if _active is None:
        return None
    lines = [line for line in _active.lines() if _counted(line)]
    if not lines:
        return None
    first = " | ".join(line[:160] for line in lines[:FIRST_LINES])
    return f"runtime messages: {len(lines)} line(s) from the libraries, in {BUNDLE_LOG}; first: {first}"


def copy_log(target: Path) -> bool:
    """Copy the captured log to ``target`` (a bundle's :data:`BUNDLE_LOG`); False when none."""
    if _active is None:
        return False
    sys.stderr.flush()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_active.path, target)
    return True
