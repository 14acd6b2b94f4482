"""One conversion: ``run(recipe) -> Result``.

resolve the target -> ingest -> data -> normalize -> prune -> quantize and export -> verify and
measure -> gate -> report, written as one bundle that appears atomically (or not at all). Each
step lives in its own module of this package; this one only sequences them.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.core import quiet
from edgeport.core.bundle import BundleWriter
from edgeport.core.errors import ConversionError, InputError
from edgeport.core.progress import Progress
from edgeport.core.sizes import artifact_bytes
from edgeport.options.recipe import Recipe
from edgeport.pipeline.bucket_build import build_buckets
from edgeport.pipeline.buckets import match_dim
from edgeport.pipeline.build import Built, build_artifact
from edgeport.pipeline.cascade_build import build_cascade, check_classifier
from edgeport.pipeline.custom_ops import (
    custom_ops_active,
    custom_ops_decision,
    custom_ops_section,
    manifest_needs,
)
from edgeport.pipeline.data import DataPlan, open_data, reference_feeds
from edgeport.pipeline.gate import SizeVerdict, gate_budget, judge, raise_if_failed, size_budget, size_note
from edgeport.pipeline.measure import measure_artifact
from edgeport.pipeline.prepare import load_source, normalize_model, prune_model
from edgeport.pipeline.report import build_manifest, build_report, collect_notes
from edgeport.pipeline.size_route import build_size_route, resolve_size_layout
from edgeport.pipeline.target import resolve_target
from edgeport.pipeline.write import write_bundle
from edgeport.runtime.cascade import SIZE


@dataclass
class Result:
    """What one conversion produced: where the bundle is, its report and the gate verdict."""

    bundle_dir: Path
    report: dict[str, Any]
    passed: bool

    @property
    def artifact(self) -> Path:
        """The model file inside the bundle."""
        return self.bundle_dir / self.report["target"]["artifact"]


# Write failures that mean "the disk (or the file size limit) is full", not a bug.
_DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def run(recipe: Recipe, progress: Progress | None = None) -> Result:
    """Convert, quantize, verify and report one model as ``recipe`` says; return the Result.

    Raises InputError (exit 2), ConversionError (exit 4) or, after writing the bundle,
    GateFailed (exit 3). A full disk is an InputError and running out of memory a
    ConversionError; either way no bundle is left behind.
    """
    try:
        with custom_ops_active(recipe) as custom_ops:
            return _run(recipe, progress, custom_ops)
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        what = exc.filename or "the bundle or its work files"
        raise InputError(
            f"cannot write {what}: {exc.strerror or os.strerror(exc.errno)}; nothing was written",
            hint="free disk space (the bundle and a work folder in the temp directory need room), "
            "or choose another --output_dir / TMPDIR",
        ) from exc
    except MemoryError as exc:
        raise ConversionError(
            "ran out of memory during the conversion; nothing was written",
            hint="pass a smaller --max_memory to be refused earlier, or use a machine with more memory",
        ) from exc
    finally:
        quiet.note_destination(None)  # a later failure outside a run keeps no log beside this one


def _run(recipe: Recipe, progress: Progress | None = None, custom_ops: list[str] | None = None) -> Result:
    """The body of :func:`run`: the steps in order, each adding its choices to ``decisions``."""
    progress = progress or Progress()
    started = time.perf_counter()
    decisions: list[dict[str, str]] = list(filter(None, [custom_ops_decision(recipe, custom_ops or [])]))
    target = resolve_target(recipe, decisions)
    quiet.note_destination(target.output_dir)  # a failed step's log is kept beside it
    profile, scheme = target.profile, target.scheme

    with BundleWriter(target.output_dir) as writer, tempfile.TemporaryDirectory(prefix="edgeport-") as work_name:
        work = Path(work_name)
        source, onnx_source = load_source(recipe, target.memory_limit, progress, decisions)
        data = open_data(recipe, scheme, source, decisions)
        feeds = reference_feeds(data)
        normalized = normalize_model(recipe, source, onnx_source, data, feeds, progress, decisions)
        if recipe.bucketing.spec is not None:  # a bad --buckets axis fails before any build
            match_dim(recipe.bucketing.spec.axis, normalized.canonical.inputs)
        # A cascade reads a classifier's scores, routing by size a variable axis: refuse any other
        # model before the build.
        canonical = normalized.canonical
        by_size = recipe.cascade is not None and recipe.route == SIZE
        cascade_output = check_classifier(canonical.outputs) if recipe.cascade and not by_size else None
        size_layout = resolve_size_layout(canonical.inputs, canonical.outputs) if by_size else None
        # Quantization and export start from the pruned model; the fp32 reference for fidelity,
        # latency and parity stays the original one.
        pruning = prune_model(recipe, normalized, feeds, data, profile, scheme, decisions, writer.tmp, progress)
        budget = gate_budget(recipe, scheme)
        size = size_budget(recipe, profile, decisions)
        built = build_artifact(
            recipe,
            profile,
            scheme,
            normalized.canonical,
            pruning,
            feeds,
            data,
            normalized.gate,
            budget,
            writer,
            work,
            progress,
            decisions,
            size,
        )
        measured = measure_artifact(
            recipe, built, data, normalized.output_names, normalized.gate, pruning, writer.tmp, work, progress
        )
        # What the bundle serves is judged: with a cascade or size routing, the routed pair.
        routing = build_routing(
            recipe, built, data, cascade_output, size_layout, measured.verified["latency"], normalized.gate, progress
        )
        size_verdict = SizeVerdict(size, artifact_bytes(built.artifact_path)) if size else None
        verdict = judge(
            measured.verified["fidelity"],
            budget,
            built.search_section,
            recipe.max_accuracy_drop,
            size_verdict,
            routing[1] if routing else None,
        )
        notes = collect_notes(normalized.canonical, built, measured, scheme, data.eval_data.synthetic)
        notes += filter(None, [size_note(verdict)])
        timings = {**progress.timings, "total": round(time.perf_counter() - started, 3)}
        report = build_report(
            recipe, profile, source, normalized.canonical, data, built, measured, verdict, decisions, notes, timings
        )
        manifest = build_manifest(report, recipe, profile, built, measured)
        # Parity of each registered custom op the model uses against its reference, what the app must register.
        section = custom_ops_section(source, normalized.canonical.onnx_model, feeds, recipe.custom_op_library)
        if section is not None:
            report["custom_ops"] = section
            report["notes"] += section["notes"]
            manifest["custom_ops"] = manifest_needs(section, recipe.output_format, built.artifact.facts)
        spec = recipe.bucketing.spec
        if spec is not None:
            # After the main artifact is measured: every bucket reuses its plan, so the search ran once.
            model_path = pruning.path if pruning else built.baseline_path
            model = pruning.canonical if pruning else normalized.canonical
            manifest["buckets"], report["buckets"] = build_buckets(
                spec, model, model_path, built, data, writer, work, recipe.threads, progress, normalized.gate
            )
        if routing is not None:
            manifest["cascade"], report["cascade"] = routing
        bundle_dir = write_bundle(writer, feeds, normalized, data.eval_data.labels, report, manifest)
    raise_if_failed(verdict, built.search_section, bundle_dir)
    return Result(bundle_dir, report, verdict.passed)


def build_routing(
    recipe: Recipe,
    built: Built,
    data: DataPlan,
    cascade_output: str | None,
    size_layout: Any,
    latency: dict[str, Any],
    gate: Any,
    progress: Progress,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Build the run's model routing: a confidence cascade on ``cascade_output``, routing by size
    with ``size_layout``, or neither (None). Returns (the manifest's section, the report's)."""
    if cascade_output is not None:
        return build_cascade(
            built,
            data,
            cascade_output,
            latency,
            recipe.max_accuracy_drop,
            recipe.cascade_threshold,
            recipe.threads,
            progress,
        )
    if size_layout is not None:
        return build_size_route(
            built, data, size_layout, gate, recipe.max_accuracy_drop, recipe.cascade_threshold, recipe.threads, progress
        )
    return None
