"""Running the conversion child (:mod:`edgeport.formats.tflite.onnx2tf_child`) from the parent.

onnx2tf and TFLite's calibrator can crash (segfaults) or hang, so the child runs in its own
process session with a timeout; a crash, hang or failure becomes :class:`ConversionError`
naming the stage it reached and its log.

The child's stdout and stderr (onnx2tf's and TensorFlow's messages) go to a log file, never to
the terminal. On success its text joins the run's captured log (:mod:`edgeport.core.quiet`, the
bundle's ``logs/runtime.log``); on failure it is kept beside where the bundle would have gone
(``<output_dir>.failed.log``), since the work folder holding it is removed, and the hint names
that copy (or, when there is none, quotes the log's last lines).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgeport.core import quiet
from edgeport.core.errors import ConversionError, InputError

LOG_TAIL = 5  # log lines quoted in a hint when the log could not be kept


def converter_timeout(default_s: float) -> float:
    """Return the converter child's timeout: ``EDGEPORT_CONVERTER_TIMEOUT`` (seconds) when set, else ``default_s``."""
    value = os.environ.get("EDGEPORT_CONVERTER_TIMEOUT", "").strip()
    if not value:
        return default_s
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InputError(f"EDGEPORT_CONVERTER_TIMEOUT={value!r} must be a positive number of seconds")
    return seconds


def _child_env() -> dict[str, str]:
    """The child's environment: edgeport importable, TensorFlow quiet and on the CPU."""
    env = dict(os.environ)
    # The folder holding the edgeport package (this file is edgeport/formats/tflite/onnx2tf_run.py).
    package_root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    quiet.apply_env(env)  # TensorFlow's, absl's and gRPC's log levels (unless --debug)
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["TF_ENABLE_ONEDNN_OPTS"] = env.get("TF_ENABLE_ONEDNN_OPTS", "0")
    return env


def run_child(request: dict[str, Any], folder: Path, timeout_s: float) -> dict[str, Any]:
    """Run the onnx2tf child on ``request``; return its result or raise ConversionError.

    The child is killed after ``timeout_s`` seconds, or after ``EDGEPORT_CONVERTER_TIMEOUT``
    seconds when that environment variable is set (CI jobs and tests bound it that way).
    """
    timeout_s = converter_timeout(timeout_s)
    request_path = folder / "request.json"
    request_path.write_text(json.dumps(request, indent=1))
    log_path = folder / "onnx2tf.log"
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgeport.formats.tflite.onnx2tf_child", str(request_path)],
            cwd=folder,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout_s)
        except BaseException as exc:  # the timeout, or Ctrl-C/SIGTERM in the parent
            # The child runs in its own session (no terminal signals reach it): kill its group,
            # so that neither a hung converter nor an interrupted one outlives edgeport.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            stage = _read_result(request["result"]).get("stage", "start")
            raise ConversionError(
                f"TFLite conversion (onnx2tf child, stage {stage}) timed out after {timeout_s:g} s",
                hint=f"{_log_hint(log_path)}; raise the timeout or convert a smaller model",
            ) from None
    result = _read_result(request["result"])
    result["seconds"] = time.monotonic() - start
    _raise_for_failure(code, result, log_path)
    quiet.append_log("TFLite converter child (onnx2tf, TensorFlow)", _read_log(log_path))
    return result


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _log_hint(log_path: Path) -> str:
    """Name a copy of the child's log that outlives the work folder, or quote its last lines."""
    kept = quiet.keep_failure_log(log_path)
    if kept is not None:
        return f"log: {kept}"
    lines = [ln.strip() for ln in _read_log(log_path).replace("\r", "\n").splitlines() if ln.strip()]
    if not lines:
        return "the converter wrote no log"
    return "last log lines: " + " | ".join(line[:200] for line in lines[-LOG_TAIL:])


def _raise_for_failure(code: int, result: dict[str, Any], log_path: Path) -> None:
    """Raise ConversionError when the child crashed (a signal), exited non-zero or reported failure."""
    stage = result.get("stage", "start")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        raise ConversionError(
            f"TFLite conversion crashed ({name}) in the onnx2tf child during {stage}",
            hint=f"{_log_hint(log_path)}; try another precision (e.g. int8-dynamic) or the ONNX format",
        )
    if code != 0 or not result.get("ok"):
        error = result.get("error") or _last_line(log_path) or f"exit code {code}"
        if result.get("traceback"):  # the child caught it: its traceback goes in the log kept
            with open(log_path, "a") as log:
                log.write(f"\n--- the child's error ---\n{result['traceback']}\n")
        raise ConversionError(
            f"TFLite conversion failed during {stage}: {error}",
            hint=_log_hint(log_path),
        )


def _read_result(path: str) -> dict[str, Any]:
    """The child's result JSON, or {} when it wrote none (yet) or it is incomplete."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _last_line(path: Path) -> str:
    """The last non-empty line of the child's log (at most 300 characters), or ""."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""
