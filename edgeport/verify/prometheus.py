"""``edgeport verify --metrics-out FILE.prom``: a verification's latency histograms, load times and
the artifact's peak memory in the Prometheus text exposition format (``runtime/metrics.py``).

Labels: ``model`` (the report's model name), ``target`` (``<format>/<profile>``) and ``variant``
(the artifact's scheme, e.g. ``int8``, or ``fp32`` for the reference timed beside it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.runner_spec import RunnerSpec
from edgeport.runtime.metrics import Gauge, LatencyHistogram, render_exposition
from edgeport.verify.memory import measure_peak_memory


def _labels(report: dict[str, Any], role: str) -> dict[str, str]:
    """The label set of ``role`` (``artifact`` or ``reference``) in ``report``."""
    target = report.get("target") or {}
    variant = str(target.get("scheme") or target.get("quantization")) if role == "artifact" else "fp32"
    return {
        "model": str((report.get("model") or {}).get("name")),
        "target": f"{target.get('format')}/{target.get('profile')}",
        "variant": variant,
    }


def metrics_text(report: dict[str, Any], peak_memory_mb: float | None) -> str:
    """Return the exposition of a verification report (a ``report.verify-*.json`` document):
    per variant the latency histogram of every timed call and the load time; the artifact's peak
    resident memory when measured (``peak_memory_mb``), else a comment saying it was not."""
    section = report["verification"]
    histograms, gauges = [], []
    for role in ("artifact", "reference"):
        figures = (section.get("latency") or {}).get(role)
        if not figures or "histogram_s" not in figures:
            continue
        labels = _labels(report, role)
        hist = figures["histogram_s"]
        histograms.append(LatencyHistogram.from_counts(labels, hist["le"], hist["cumulative"], figures["sum_ms"] / 1e3))
        load = (section.get("load_time_s") or {}).get(role)
        if load is not None:
            gauges.append(Gauge("edgeport_model_load_seconds", "Time to load the model into a session.", load, labels))
    if peak_memory_mb is not None:
        gauges.append(
            Gauge(
                "edgeport_model_peak_memory_bytes",
                "Peak resident memory of a process that loaded the model and ran it 3 times.",
                peak_memory_mb * 1024 * 1024,
                _labels(report, "artifact"),
            )
        )
    text = render_exposition(histograms, gauges)
    if peak_memory_mb is None:
        text += "# edgeport_model_peak_memory_bytes: not measured (remote runner or no probe result)\n"
    return text


def artifact_peak_memory(
    bundle_dir: Path, manifest: dict[str, Any], feeds: dict[str, np.ndarray], threads: int
) -> float | None:
    """Peak resident memory in MB of a child process that loads the bundle's artifact and runs it
    on ``feeds`` (``verify/memory.py``); None when the probe gives no figure (not Linux, failed)."""
    run = manifest["runner"]
    spec = RunnerSpec(run["kind"], str(bundle_dir / run["file"]), dict(run.get("kwargs") or {}))
    with tempfile.TemporaryDirectory(prefix="edgeport-prom-") as work:
        path = Path(work) / "feeds.npz"
        np.savez(path, **feeds)
        figures = measure_peak_memory(spec, path, threads)
    return figures.get("peak_mb")


def write_metrics(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, renamed)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write --metrics-out {path}: {exc.strerror}") from exc


def export_verification_metrics(
    bundle_dir: Path, section: dict[str, Any], runner: str, threads: int, path: Path
) -> str:
    """Write the metrics of a finished ``edgeport verify`` (its returned ``section``, which names
    the report it wrote) to ``path``; the artifact's peak memory is probed here for a local
    runner. Returns the text written."""
    from edgeport.reports.json import read_report
    from edgeport.runtime.timing import first_samples
    from edgeport.verify.bundle_check import load_reference
    from edgeport.verify.manifest import load_manifest

    bundle_dir = Path(bundle_dir)
    report = read_report(Path(section["report_json"]))
    peak = None
    if runner == "local":
        manifest = load_manifest(bundle_dir)
        feeds = load_reference(bundle_dir, manifest)[0]
        batch = int((section.get("latency") or {}).get("batch") or 1)
        peak = artifact_peak_memory(bundle_dir, manifest, first_samples(feeds, batch), threads)
    text = metrics_text(report, peak)
    write_metrics(path, text)
    return text
