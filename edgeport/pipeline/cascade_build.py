"""The cascade step of one run (issue 18, model routing): the run's artifact is the small model,
its fp32 baseline (baseline_fp32.onnx, already in the bundle) the large one. Both run over the
calibration data to pick the threshold and over the eval data to measure the rule, with the
per-call p50s that verification measured side by side in this run. The pair, the data the
threshold is picked on and the report's section are shared with the size rule
(``pipeline/size_route.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec
from edgeport.core.progress import Progress
from edgeport.data.dataset import Dataset
from edgeport.pipeline.build import Built
from edgeport.pipeline.cascade import choose_threshold, figures
from edgeport.pipeline.data import DataPlan
from edgeport.runtime.bundle import open_runner
from edgeport.runtime.cascade import CONFIDENCE, MEASURE, NOT_SCORES, confidence
from edgeport.runtime.ort import OrtRunner
from edgeport.verify.evaluate import run_dataset
from edgeport.verify.gate import DEFAULT_BUDGET


def check_classifier(outputs: list[TensorSpec]) -> str:
    """Return the name of the class-score output (the first output, [batch, classes>=2] floats);
    raise InputError (one line) before any build when the model has none."""
    first = outputs[0] if outputs else None
    classes = first.shape[1] if first is not None and len(first.shape) == 2 else None
    if first is None or not first.dtype.startswith("float") or (isinstance(classes, int) and classes < 2):
        raise InputError(NOT_SCORES, hint="drop --cascade, or give a model whose first output is [batch, classes]")
    if classes is None:
        raise InputError(f"{NOT_SCORES} (first output {first.name} has shape {first.shape})")
    return first.name


def _classes(small: Any, large: Any, dataset: Dataset, data: DataPlan, output: str) -> tuple[np.ndarray, ...]:
    """Run both models over ``dataset``; return (small's confidence, small's class, large's class)."""
    index = small.output_names.index(output)
    small_scores = run_dataset(small, dataset, data.batch, data.dynamic)[index]
    large_scores = run_dataset(large, dataset, data.batch, data.dynamic)[large.output_names.index(output)]
    return confidence(small_scores), small_scores.argmax(axis=1), large_scores.argmax(axis=1)


def open_pair(built: Built, threads: int) -> tuple[Any, OrtRunner]:
    """Open the routed pair: (the run's artifact, the small model; its fp32 baseline, the large one)."""
    runner = built.artifact.runner
    small = open_runner(runner.kind, built.artifact_path, threads, dict(runner.kwargs))
    return small, OrtRunner(built.baseline_path, threads=threads)


def calibration_set(data: DataPlan) -> Dataset:
    """The data a routing threshold is picked on: the calibration data (opened for routing
    alone when the scheme calibrates nothing), else the eval data."""
    for dataset in (data.calibration, data.routing):
        if dataset is not None:
            return dataset
    return data.eval_data


def budget_points(budget: float | None) -> float:
    """The accuracy budget in points the threshold must meet (None: the default gate budget)."""
    return DEFAULT_BUDGET if budget is None else float(budget)


def routing_report(
    manifest: dict[str, Any],
    forced: float | None,
    points: float,
    latency_source: str,
    picked: dict[str, Any],
    measured: dict[str, Any],
) -> dict[str, Any]:
    """Return the report's ``cascade`` section of either rule: the manifest's rule, where the
    threshold came from, the budget, how latency was measured, the pick on the calibration data
    and the eval figures with whether their drop is within the budget."""
    return {
        **manifest,
        "threshold_source": "--cascade_threshold" if forced is not None else "calibration data",
        "budget": points,
        "latency_source": latency_source,
        "calibration": picked,
        "eval": {**measured, "within_budget": bool(measured["drop_vs_large"] <= points + 1e-9)},
    }


def build_cascade(
    built: Built,
    data: DataPlan,
    output: str,
    latency: dict[str, Any],
    budget: float | None,
    forced: float | None,
    threads: int,
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pick the threshold on the calibration data (``forced``: the user's) under ``budget``
    points (None: DEFAULT_BUDGET) and measure the rule on the eval data. ``latency`` is
    verification's ``latency`` section (reference = fp32, artifact = small, p50 per call).
    Returns (the manifest's ``cascade`` section, the report's)."""
    small, large = open_pair(built, threads)
    t_small, t_large = float(latency["artifact"]["p50_ms"]), float(latency["reference"]["p50_ms"])
    points = budget_points(budget)
    calibration = calibration_set(data)
    with progress.step("cascade: pick the threshold"):
        conf, small_cls, large_cls = _classes(small, large, calibration, data, output)
        labels = calibration.labels[: len(conf)] if calibration.labels is not None else None
        picked = choose_threshold(conf, small_cls, large_cls, labels, t_small, t_large, points)
    threshold = forced if forced is not None else picked["threshold"]
    with progress.step("cascade: measure on the eval data"):
        conf, small_cls, large_cls = _classes(small, large, data.eval_data, data, output)
        labels = data.eval_data.labels[: len(conf)] if data.eval_data.labels is not None else None
        measured = figures(conf, small_cls, large_cls, labels, threshold, t_small, t_large)
    manifest = {
        "rule": CONFIDENCE,
        "small": built.artifact_path.name,
        "large": built.baseline_path.name,
        "output": output,
        "threshold": threshold,
        "measure": MEASURE,
    }
    return manifest, routing_report(manifest, forced, points, "verify's batch-1 p50s, side by side", picked, measured)
