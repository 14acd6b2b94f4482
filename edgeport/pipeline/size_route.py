"""Routing by input size (issue 18, ``--route size``): an input whose size is above the threshold
goes to the small model (the run's artifact), the rest to the large one (its fp32 baseline).

A sample's size is its real length for text (the attention mask's sum) and the number of
elements of the first input per sample otherwise, as ``edgeport.runtime.cascade.sample_sizes``
computes it when serving. Every calibration and eval sample runs on both models at its natural
size (the tokenizer's padding cut off), batch 1, timed side by side; the threshold is the one
with the lowest mean latency whose routed outputs stay within the accuracy budget of the large
model's, by the run's gate measure. The pair, the budget and the report's section are the
cascade's (``pipeline/cascade_build.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec
from edgeport.core.progress import Progress
from edgeport.data.dataset import Dataset
from edgeport.pipeline.bucket_build import join_samples, split_rows
from edgeport.pipeline.buckets import fit_rows
from edgeport.pipeline.build import Built
from edgeport.pipeline.cascade import pick_threshold, size_candidates, size_figures
from edgeport.pipeline.cascade_build import budget_points, calibration_set, open_pair, routing_report
from edgeport.pipeline.data import DataPlan
from edgeport.runtime.cascade import ELEMENTS, MASK_SUM, SIZE, sample_sizes
from edgeport.runtime.timing import time_side_by_side
from edgeport.verify.gate import Gate

# Timed calls per sample and model (after one warm-up), interleaved; the median is kept.
REPEATS = 3
LATENCY_SOURCE = f"per sample at its natural size, batch 1, median of {REPEATS} interleaved calls"


@dataclass(frozen=True)
class SizeLayout:
    """What the size rule reads: ``input`` (the mask, else the first input), its variable
    ``axis``, the ``measure`` (MASK_SUM or ELEMENTS), and the inputs and outputs that carry the
    mask's axis (cut to the real length / joined token by token), by position."""

    input: str
    axis: int
    measure: str
    inputs: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)


def _variable_axes(spec: TensorSpec) -> list[int]:
    """The positions of ``spec``'s non-batch dims whose size is not fixed."""
    return [i for i, d in enumerate(spec.shape) if i > 0 and not isinstance(d, int)]


def resolve_size_layout(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> SizeLayout:
    """Return what ``--route size`` reads on a model with these inputs and outputs: the mask
    input (a name with ``mask``) on its variable axis, else the first input. Raises InputError
    (one line) before any build when that input has no variable axis: every sample would have
    the same size."""
    mask = next((s for s in inputs if "mask" in s.name.lower() and _variable_axes(s)), None)
    if mask is not None:
        axis = _variable_axes(mask)[0]
        dim = mask.shape[axis]
        carried = {s.name: s.shape.index(dim) for s in inputs if isinstance(dim, str) and dim in s.shape}
        out = {s.name: s.shape.index(dim) for s in outputs if isinstance(dim, str) and dim in s.shape}
        return SizeLayout(mask.name, axis, MASK_SUM, carried or {mask.name: axis}, out)
    first = inputs[0] if inputs else None
    if first is None or not _variable_axes(first):
        shape = f"{first.name} {first.shape}" if first is not None else "none"
        raise InputError(
            f"--route size needs an input with a variable axis (first input: {shape})",
            hint="drop --route size (every input has the same size), or export the model with a dynamic axis",
        )
    return SizeLayout(first.name, _variable_axes(first)[0], ELEMENTS)


def _natural_rows(dataset: Dataset, layout: SizeLayout) -> list[dict[str, np.ndarray]]:
    """Every sample of ``dataset`` as batch-1 feeds at its natural size: with a mask, the inputs
    that carry its axis are cut to the real length (a tokenizer's padding is not the input)."""
    rows = []
    for batch in dataset.batches(32):
        for row in split_rows(batch, dataset.axes):
            if layout.measure == MASK_SUM:
                length = int(sample_sizes(row, layout.input, MASK_SUM)[0])
                row = {n: fit_rows(a, layout.inputs[n], length, 0) if n in layout.inputs else a for n, a in row.items()}
            rows.append(row)
    return rows


@dataclass
class _Seen:
    """Both models on every sample of one data set: sizes, per-sample p50s (ms) and outputs."""

    sizes: np.ndarray
    ms_small: np.ndarray
    ms_large: np.ndarray
    small: dict[str, list[np.ndarray]]
    large: dict[str, list[np.ndarray]]


def _run_samples(small: Any, large: Any, dataset: Dataset, layout: SizeLayout) -> _Seen:
    """Run and time both models on each sample of ``dataset`` at its natural size."""
    rows = _natural_rows(dataset, layout)
    outs: dict[str, dict[str, list[np.ndarray]]] = {"small": {}, "large": {}}
    times: dict[str, list[float]] = {"small": [], "large": []}
    for row in rows:
        pair = {"small": small, "large": large}
        for key, runner in pair.items():
            for name, value in zip(runner.output_names, runner.run(row), strict=True):
                outs[key].setdefault(name, []).append(value)
        timed = time_side_by_side(pair, [row], REPEATS, 1)
        for key in pair:
            times[key].append(float(np.median(timed[key])) / 1e6)
    sizes = np.array([int(sample_sizes(r, layout.input, layout.measure)[0]) for r in rows], dtype=np.int64)
    return _Seen(sizes, np.array(times["small"]), np.array(times["large"]), outs["small"], outs["large"])


def _drop_of(
    seen: _Seen, gate: Gate, labels: np.ndarray | None, layout: SizeLayout
) -> tuple[Callable[[np.ndarray], float], str]:
    """Return (a function from "the small model answers" per sample to the routed outputs' drop
    against the large model's, in the gate's budget points; the gate's measure, as text)."""
    names = list(seen.large)
    reference = [join_samples(seen.large[n], layout.outputs.get(n)) for n in names]
    chosen = labels[: len(seen.sizes)] if labels is not None else None

    def assess(small: np.ndarray) -> dict[str, Any]:
        candidate = []
        for n in names:
            picked = [s if m else g for s, g, m in zip(seen.small[n], seen.large[n], small, strict=True)]
            candidate.append(join_samples(picked, layout.outputs.get(n)))
        return gate.assess(reference, candidate, names, chosen)

    metric = assess(np.ones(len(seen.sizes), dtype=bool))["metric"]
    return (lambda small: float(assess(small)["drop"])), f"the gate's measure vs the large model: {metric}"


def _figures_on(
    small: Any, large: Any, dataset: Dataset, layout: SizeLayout, gate: Gate
) -> tuple[np.ndarray, Callable[[float], dict[str, Any]]]:
    """Run both models over ``dataset``; return (the samples' sizes, threshold -> the size
    rule's figures on it)."""
    seen = _run_samples(small, large, dataset, layout)
    drop, against = _drop_of(seen, gate, dataset.labels, layout)

    def at(threshold: float) -> dict[str, Any]:
        return size_figures(seen.sizes, threshold, drop, seen.ms_small, seen.ms_large, against)

    return seen.sizes, at


def build_size_route(
    built: Built,
    data: DataPlan,
    layout: SizeLayout,
    gate: Gate,
    budget: float | None,
    forced: float | None,
    threads: int,
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pick the size threshold on the calibration data (``forced``: the user's) under ``budget``
    points (None: the default budget) and measure the rule on the eval data beside each model
    alone. Returns (the manifest's ``cascade`` section with ``rule: size``, the report's)."""
    small, large = open_pair(built, threads)
    points = budget_points(budget)
    with progress.step("route by size: pick the threshold"):
        sizes, at = _figures_on(small, large, calibration_set(data), layout, gate)
        picked = pick_threshold(size_candidates(sizes), at, points)
    threshold = forced if forced is not None else picked["threshold"]
    with progress.step("route by size: measure on the eval data"):
        sizes, at = _figures_on(small, large, data.eval_data, layout, gate)
        measured = at(threshold)
        measured["sizes"] = {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())}
    manifest = {
        "rule": SIZE,
        "small": built.artifact_path.name,
        "large": built.baseline_path.name,
        "input": layout.input,
        "axis": layout.axis,
        "threshold": threshold,
        "measure": layout.measure,
    }
    return manifest, routing_report(manifest, forced, points, LATENCY_SOURCE, picked, measured)
