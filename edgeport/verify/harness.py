"""The verification harness a device runs with its own python: ``python harness.py job.json``.

``verify/remote.py`` copies it to the device beside a small ``edgeport`` package
(:func:`edgeport.verify.remote.stage_harness`): a stub ``edgeport/__init__.py``, the registry
and the runner spec from ``edgeport/core`` and ``edgeport/runtime`` as it is. So the device runs
the very runners, feeding, timing and percentiles of a local ``edgeport verify``, and needs only
numpy and the artifact's runtime (``onnxruntime``, ``ai_edge_litert`` or, for a Core ML
``.mlpackage`` on a Mac, ``coremltools``), never an edgeport install. The job file (in the same
folder as the models and ``inputs.npz``) says::

    {"artifact": {"kind": "onnxruntime"|"litert"|"coreml", "file": "model.onnx", "kwargs": {...}},
     "reference": {... the fp32 model timed side by side ...} or null,
     "inputs": "inputs.npz", "input_names": [...], "output_names": [...],
     "threads": 1, "runs": 100, "warmup": 10, "latency_batch": 1, "batch_axes": {...} or null}

It prints one JSON document on stdout: ``{"ok": true, "device": {...}, "runtime": {...},
"latency": {...}, "load_time_s": {...}, "outputs_npz_b64": "..."}`` (the artifact's outputs on
every input, and the reference's when there is one, as a base64 ``.npz``), or ``{"ok": false,
"error": ..., "missing": [packages]}`` with exit code 3 when a package is missing, 4 when the
job names a runtime the device cannot run or the runtime fails.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import sys
from typing import Any, NoReturn

from edgeport.core.errors import describe_exception
from edgeport.core.registry import RuntimeEntry, runtime_entry

EXIT_MISSING = 3
EXIT_FAILED = 4
# The runners in this package are the ones shipped (and numpy + their runtime only).
SHIPPED_RUNNERS = "edgeport.runtime."


def shipped_runtime(kind: str) -> RuntimeEntry:
    """Return the registry entry of runtime ``kind`` when its runner ships to devices; raise
    ValueError (one line) for an unknown kind or one whose runner needs more of edgeport."""
    entry = runtime_entry(kind)
    if not entry.runner.startswith(SHIPPED_RUNNERS):
        raise ValueError(
            f"runner kind {kind!r} runs only where edgeport is installed ({entry.runner} is not shipped to devices)"
        )
    return entry


def _emit(document: dict[str, Any], code: int) -> NoReturn:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()
    sys.exit(code)


def _fail(error: str) -> NoReturn:
    _emit({"ok": False, "error": error}, EXIT_FAILED)


def _missing(entries: list[RuntimeEntry]) -> list[str]:
    """Return the pip names of numpy and the runtimes that this python lacks (nothing is imported:
    coremltools alone takes seconds)."""
    wanted = {"numpy": "numpy"}
    wanted.update({entry.module: entry.package for entry in entries})  # not `|`: pythons before 3.9 run this
    return [package for module, package in wanted.items() if importlib.util.find_spec(module.split(".")[0]) is None]


def _refusal(kinds: set[str]) -> str | None:
    """Return why this device's OS cannot run one of ``kinds`` (Core ML off macOS), or None."""
    if "coreml" in kinds:
        from edgeport.runtime.coreml import refusal_here

        return refusal_here()
    return None


def open_runner(spec: dict[str, Any], threads: int) -> Any:
    """Return the runner of ``{"kind", "file", "kwargs"}``, opened as a local run opens it."""
    from edgeport.core.runner_spec import RunnerSpec

    return RunnerSpec(spec["kind"], spec["file"], dict(spec.get("kwargs") or {})).open(threads)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run the job (see the module docstring); return the JSON-ready result."""
    import numpy as np

    from edgeport.runtime.host import device_description
    from edgeport.runtime.timing import first_samples, percentiles_ms, time_side_by_side

    threads = int(job.get("threads", 1))
    with np.load(job["inputs"]) as data:
        feeds = {name: data[name] for name in job["input_names"]}
    artifact = open_runner(job["artifact"], threads)
    # Timed in the order of a local run: the reference first, then the artifact.
    runners = {"reference": open_runner(job["reference"], threads)} if job.get("reference") else {}
    runners["artifact"] = artifact
    arrays = {}
    for role in ("artifact", "reference"):
        if role in runners:
            outputs = runners[role].run(feeds)
            # No zip(strict=): it needs python 3.10, and a device's python may be older.
            arrays.update({f"{role}/{name}": value for name, value in zip(job["output_names"], outputs)})  # noqa: B905
    latency_feeds = first_samples(feeds, int(job.get("latency_batch", 1)), job.get("batch_axes"))
    samples = time_side_by_side(runners, [latency_feeds], int(job.get("runs", 100)), int(job.get("warmup", 10)))
    runtime = artifact.describe()
    runtime.pop("host", None)  # the device section describes the machine
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return {
        "ok": True,
        "device": device_description(),
        "runtime": runtime,
        "latency": {name: percentiles_ms(values) for name, values in samples.items()},
        "load_time_s": {role: runners[role].load_seconds for role in ("artifact", "reference") if role in runners},
        "outputs_npz_b64": base64.b64encode(buffer.getvalue()).decode("ascii"),
    }


def _read_job(path: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[RuntimeEntry]]:
    """Return the job, its runner specs (artifact, then reference) and their registry entries;
    print a one-line error and exit 4 when the file is unreadable or names a runtime not shipped."""
    try:
        with open(path) as handle:
            job = json.load(handle)
    except (OSError, ValueError) as exc:
        _fail(f"cannot read the job file {path}: {describe_exception(exc)}")
    try:
        specs = [job["artifact"]] + ([job["reference"]] if job.get("reference") else [])
        return job, specs, [shipped_runtime(spec["kind"]) for spec in specs]
    except ValueError as exc:  # an unknown runtime kind: the registry's message says which are known
        _fail(str(exc))
    except (KeyError, TypeError) as exc:
        _fail(f"the job file {path} is not a harness job: {describe_exception(exc)}")


def main(argv: list[str]) -> None:
    """Entry point: read the job file, check the runtimes and packages, run, print the JSON result."""
    if len(argv) != 2:
        _fail("usage: harness.py job.json")
    job, specs, entries = _read_job(argv[1])
    missing = _missing(entries)
    if "numpy" not in missing:  # the runner modules import: the OS may refuse a runtime first
        refusal = _refusal({spec["kind"] for spec in specs})
        if refusal:
            _fail(refusal)
    if missing:
        _emit(
            {"ok": False, "error": f"missing python packages: {', '.join(missing)}", "missing": missing}, EXIT_MISSING
        )
    try:
        result = run_job(job)
    except Exception as exc:  # report the runtime's error to the host in one line
        _fail(describe_exception(exc))
    _emit(result, 0)


if __name__ == "__main__":
    main(sys.argv)
