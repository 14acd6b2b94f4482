"""Peak memory of loading and running an ONNX model, measured in a fresh child process
(an in-process peak would include everything edgeport itself has loaded)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgeport.core.registry import runtime_entry
from edgeport.core.runner_spec import RunnerSpec


def _current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1024 * 1024)


def _high_water_mb() -> float | None:
    """This process's peak RSS since exec (Linux VmHWM; None elsewhere).

    Not ru_maxrss: Linux carries the parent's high-water mark across exec into it.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measure_peak_memory(spec: RunnerSpec, feeds_path: Path, threads: int, timeout: float = 120) -> dict[str, Any]:
    """Return memory figures of a child process that loads and runs the model.

    ``baseline_mb``: resident memory after importing the runtime; ``loaded_mb``: after
    creating the session and running 3 times; ``runtime_mb``: the difference (what the model
    costs); ``peak_mb``: the child's high-water mark (Linux only, else absent). On failure:
    an ``error`` entry instead of figures.
    """
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "edgeport.verify.memory", json.dumps(spec.as_dict()), str(feeds_path), str(threads)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"memory probe timed out after {timeout:.0f} s"}
    if completed.returncode != 0:
        return {"error": f"memory probe failed: {completed.stderr.strip().splitlines()[-1:]}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def runner_memory(spec: RunnerSpec, runner: Any, feeds_path: Path, threads: int) -> dict[str, Any]:
    """Memory figures of the model ``spec`` opens: a child process's (see
    :func:`measure_peak_memory`) for a runtime inside this process; for one that runs in another
    program (a browser page) the figures the open ``runner`` reports (``describe()["memory"]``,
    e.g. the page's JS heap and WebAssembly memory), or "not run" with the reason."""
    if runtime_entry(spec.kind).process_memory:
        return measure_peak_memory(spec, feeds_path, threads)
    return runner.describe().get("memory") or {"not_run": f"{spec.kind} runs in another program and reports none"}


# Set by edgeport.pipeline.custom_ops for the run: {"specs": [...], "libraries": [...]}, so that the
# probe's child process registers the same custom ops (their Python kernels live in the op files).
CUSTOM_OPS_ENV = "EDGEPORT_CUSTOM_OPS"


def _use_custom_ops_from_env() -> None:
    """In the probe's child: load the run's custom-op files and set its ONNX Runtime custom ops."""
    value = os.environ.get(CUSTOM_OPS_ENV)
    if not value:
        return
    from edgeport.ops import load_custom_ops
    from edgeport.ops.ort import session_custom_ops
    from edgeport.runtime.ort import use_custom_ops

    wanted = json.loads(value)
    for spec in wanted.get("specs", []):
        load_custom_ops(spec)
    use_custom_ops(*session_custom_ops(wanted.get("libraries", [])))


def _probe(spec_json: str, feeds_path: str, threads: int) -> None:
    import numpy as np

    spec = RunnerSpec(**json.loads(spec_json))
    importlib.import_module(runtime_entry(spec.kind).module)  # the baseline includes the runtime itself
    _use_custom_ops_from_env()  # before the baseline too: the kernels are not the model's memory

    with np.load(feeds_path, allow_pickle=False) as data:
        feeds = {k: data[k] for k in data.files}
    baseline = _current_rss_mb()
    runner = spec.open(threads)
    for _ in range(3):
        runner.run(feeds)
    loaded = _current_rss_mb()
    figures = {
        "baseline_mb": round(baseline, 1),
        "loaded_mb": round(loaded, 1),
        "runtime_mb": round(loaded - baseline, 1),
    }
    peak = _high_water_mb()
    if peak is not None:
        figures["peak_mb"] = round(peak, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    _probe(sys.argv[1], sys.argv[2], int(sys.argv[3]))
