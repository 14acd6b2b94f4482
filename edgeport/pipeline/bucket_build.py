"""Build and verify the shape buckets of one run (issue 18): each bucket is the run's precision
plan applied by the same backend to the model with the bucketed dim fixed, written into the
bundle beside the dynamic artifact, then checked against the fp32 model at the natural length on
the eval samples that fall in it, through ``edgeport.runtime.bundle`` (the serving code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.bundle import BundleWriter
from edgeport.core.model import CanonicalModel
from edgeport.core.progress import Progress
from edgeport.data.dataset import Dataset
from edgeport.options.buckets import BucketSpec
from edgeport.pipeline.buckets import bucket_dataset, fix_dim, resolve_layout
from edgeport.pipeline.build import Built
from edgeport.pipeline.data import DataPlan
from edgeport.runtime.bundle import Buckets, DeployedModel
from edgeport.runtime.ort import OrtRunner
from edgeport.verify.buckets_check import bucket_line, compare_sample, natural_inputs
from edgeport.verify.gate import Gate

EVAL_BATCH = 32


def build_buckets(
    spec: BucketSpec,
    model: CanonicalModel,
    model_path: Path,
    built: Built,
    data: DataPlan,
    writer: BundleWriter,
    work: Path,
    threads: int,
    progress: Progress,
    gate: Gate | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build one static artifact per bucket from ``built.plan`` (the ONNX file ``model_path``,
    the one the plan was made for, with the axis fixed) into ``writer`` and verify each on its
    eval samples. Returns (the manifest's ``buckets`` section, the report's)."""
    layout = resolve_layout(spec, model)
    rule = layout.buckets
    source = onnx.load(str(model_path))
    for size, file in zip(rule.sizes, rule.files, strict=True):
        folder = work / f"bucket_{size}"
        folder.mkdir()
        fixed_path = folder / "fixed.onnx"
        onnx.save(fix_dim(source, layout.dim, size), str(fixed_path))
        calibration = bucket_dataset(data.calibration, layout, size) if data.calibration is not None else None
        with progress.step(f"bucket {layout.dim}={size}"):
            built.backend.build(fixed_path, built.plan, writer.path(file), folder, calibration, data.batch)
    # The manifest's runner spec, so the check opens the buckets as a server would.
    runner = built.artifact.runner
    spec_runner = {"kind": runner.kind, "file": built.artifact_path.name, "kwargs": dict(runner.kwargs)}
    deployed = DeployedModel(writer.tmp, {"runner": spec_runner}, threads, rule)
    reference = OrtRunner(built.baseline_path, threads=threads)
    with progress.step("verify buckets"):
        checks = verify_buckets(deployed, reference, data.eval_data, rule, gate)
    report = {"axis": spec.axis, "dim": layout.dim, "rule": layout.manifest()["rule"], **checks}
    return layout.manifest(), report


def split_rows(batch: dict[str, np.ndarray], axes: dict[str, int | None]) -> list[dict[str, np.ndarray]]:
    """Split a batch of feeds into one-sample feeds (inputs without a batch axis are shared)."""
    name = next(n for n in batch if axes.get(n) is not None)
    count = batch[name].shape[axes[name]]
    return [
        {n: a if axes.get(n) is None else np.take(a, [i], axis=axes[n]) for n, a in batch.items()} for i in range(count)
    ]


def join_samples(parts: list[np.ndarray], axis: int | None) -> np.ndarray:
    """Join one output of many single-sample runs sample-first; an output that carries the
    bucketed axis (token states of varying length) is joined token by token."""
    if axis is None:
        return np.concatenate(parts, axis=0)
    # [1, L, ...] (batch first, the axis at ``axis``) -> [L, ...]: one row per real token.
    return np.concatenate([np.moveaxis(p, axis, 1).reshape(-1, *np.moveaxis(p, axis, 1).shape[2:]) for p in parts])


@dataclass
class _Found:
    """What one bucket saw: per sample (min cosine, max |diff|), the outputs and label indices."""

    pairs: list[tuple[float, float]] = field(default_factory=list)
    reference: dict[str, list[np.ndarray]] = field(default_factory=dict)
    candidate: dict[str, list[np.ndarray]] = field(default_factory=dict)
    indices: list[int] = field(default_factory=list)


def _entry(size: int, file: str, found: _Found, rule: Buckets, gate: Gate | None, labels: np.ndarray | None) -> dict:
    """One bucket's line of the report: counts, cosines, largest difference and the gate's verdict."""
    entry = bucket_line(size, file, found.pairs)
    if gate is not None and found.pairs:
        names = list(found.reference)
        reference = [join_samples(found.reference[n], rule.outputs.get(n)) for n in names]
        candidate = [join_samples(found.candidate[n], rule.outputs.get(n)) for n in names]
        chosen = labels[found.indices] if labels is not None else None
        assessed = gate.assess(reference, candidate, names, chosen)
        entry.update(
            {
                "drop": round(float(assessed["drop"]), 4),
                "budget_use": round(float(assessed["budget_use"]), 4),
                "within_budget": bool(assessed["budget_use"] <= 1.0),
                "metric": assessed["metric"],
            }
        )
    return entry


def verify_buckets(
    deployed: DeployedModel, reference: OrtRunner, eval_data: Dataset, rule: Buckets, gate: Gate | None = None
) -> dict[str, Any]:
    """Run every eval sample at its natural length through the bucket rule (``deployed``) and
    through the fp32 ``reference``; return per bucket the sample count, the cosine similarity
    (min, mean), the largest absolute difference over all outputs and, with ``gate``, the run's
    gate measure on the bucket's samples (drop, budget use, within budget); plus the count of
    samples longer than the largest bucket (not run: cutting them would change their outputs)."""
    found = {size: _Found() for size in rule.sizes}
    too_long, index = 0, -1
    for batch in eval_data.batches(EVAL_BATCH):
        for row in split_rows(batch, eval_data.axes):
            index += 1
            length = rule.natural_length(row)
            if length > rule.sizes[-1]:
                too_long += 1
                continue
            natural = natural_inputs(row, rule, length)
            expected = dict(zip(reference.output_names, reference.run(natural), strict=True))
            got = deployed.run(natural)
            bucket = found[rule.sizes[rule.choose(length)]]
            bucket.pairs.append(compare_sample(got, expected, rule, length))
            bucket.indices.append(index)
            for name, value in expected.items():
                bucket.reference.setdefault(name, []).append(value)
                bucket.candidate.setdefault(name, []).append(got[name])
    labels = eval_data.labels
    buckets = [
        _entry(size, file, found[size], rule, gate, labels) for size, file in zip(rule.sizes, rule.files, strict=True)
    ]
    return {"buckets": buckets, "longer_than_largest": too_long}
