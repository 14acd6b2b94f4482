"""Assemble report.json and manifest.json from the results of one run's steps (the data only:
reports/ renders and writes it, the bundle writer commits it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeport.core import quiet
from edgeport.core.model import CanonicalModel, SourceModel
from edgeport.core.version import __version__, installed_versions
from edgeport.options.recipe import Recipe
from edgeport.pipeline.build import BASELINE_NAME, Built
from edgeport.pipeline.data import DataPlan
from edgeport.pipeline.gate import Verdict
from edgeport.pipeline.measure import Measured
from edgeport.pipeline.target import model_display_name
from edgeport.profiles.schema import DeviceProfile
from edgeport.reports.json import make_report
from edgeport.runtime.host import host_description
from edgeport.verify.download import download_sizes

LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxslim", "onnxconverter-common", "numpy")


RANDOM_EVAL_NOTE = (
    "fidelity was measured on random inputs: no figure here is an accuracy. Top-1 agreement on noise is weak "
    "(fp32 puts it in a few classes, with near-tie margins) and a plain cosine is high even for a broken model "
    "(the outputs are mostly one input-independent vector), so class scores are gated on the cosine of the "
    "deviations from fp32's mean output; pass --eval_data for real figures"
)


def library_versions() -> dict[str, str]:
    """Return the installed versions of the libraries that shape the artifact."""
    found = installed_versions(LIBRARIES)
    return {"edgeport": __version__, **{name: version or "not installed" for name, version in found.items()}}


def collect_notes(
    canonical: CanonicalModel, built: Built, measured: Measured, scheme: str, synthetic_eval: bool
) -> list[str]:
    """Return the report's notes, in the order the steps found them: normalization's, the build's
    (and the plan entries the format could not follow), flagged ops, a quantization that did not
    pay, and eval data that was random."""
    notes = list(canonical.notes)
    notes += built.artifact.notes
    for layer, why in (built.artifact.facts.get("not_expressible") or {}).items():
        notes.append(f"plan not followed for {layer}: {why}")
    for flag in measured.op_check["flagged"]:
        notes.append(f"op check: {flag['count']} x {flag['op']}: {flag['why']}")
    speedup = measured.verified["latency"].get("speedup")
    if scheme not in ("none", "auto") and speedup is not None and speedup < 1.0:
        notes.append(
            f"the {scheme} artifact ran at {speedup:.2f}x the speed of fp32 in the same runtime: quantization does "
            "not pay for this model here; --quantization auto returns the float model in such cases"
        )
    if synthetic_eval:
        notes.append(RANDOM_EVAL_NOTE)
    runtime = quiet.runtime_note()  # what TensorFlow, onnx2tf, ... wrote, captured off the terminal
    if runtime:
        notes.append(runtime)
    return notes


def _model_section(recipe: Recipe, source: SourceModel, canonical: CanonicalModel) -> dict[str, Any]:
    """The report's "model" section: the source and the normalized model's I/O."""
    return {
        "name": model_display_name(recipe.input_model),
        "source": source.path,
        "framework": source.framework,
        "form": source.form,
        "sha256": source.sha256,
        "exporter": canonical.exporter,
        "parity": canonical.parity,
        "inputs": [s.as_dict() for s in canonical.inputs],
        "outputs": [s.as_dict() for s in canonical.outputs],
    }


def _data_section(data: DataPlan) -> dict[str, Any]:
    """The report's "data" section: the eval set and, when one was used, the calibration set."""
    section = {"eval": data.eval_data.describe()}
    if data.calibration is not None:
        section["calibration"] = data.calibration.describe()
    return section


def _size_section(built: Built, measured: Measured, verdict: Verdict) -> dict[str, Any]:
    """The report's "size" section: the fp32 timing reference against the artifact, in bytes on
    disk (external data included), and what a page downloads of each (gzip, brotli); with the
    size budget's verdict when there is one."""
    artifact = download_sizes(built.artifact_path)
    reference = download_sizes(measured.latency_reference.path)
    sizes: dict[str, Any] = {
        "reference_bytes": reference["raw_bytes"],
        "artifact_bytes": artifact["raw_bytes"],
        "reference_file": Path(measured.latency_reference.path).name,
    }
    sizes["ratio"] = sizes["reference_bytes"] / sizes["artifact_bytes"]
    keys = ("raw_bytes", "gzip_bytes", "brotli_bytes")
    sizes["download"] = {
        "artifact": {k: artifact[k] for k in keys},
        "reference": {k: reference[k] for k in keys},
        "gzip_level": artifact["gzip_level"],
        "brotli_quality": artifact["brotli_quality"],
    }
    if verdict.size is not None:
        sizes["budget"] = {
            "max_size_bytes": verdict.size.budget.max_bytes,
            "source": verdict.size.budget.source,
            "gate": verdict.size.budget.user_set,  # False: the profile's default, a warning only
            "met": verdict.size.met,
            "how_close": verdict.size.sentence(),
        }
    return sizes


def browser_section(verified: dict[str, Any]) -> dict[str, Any] | None:
    """The report's "browser" section, for an artifact measured in a web page (None otherwise):
    the browser and onnxruntime-web facts the page reported (user agent, backend, threads, SIMD,
    adapter), p50/p90 latency, load and compile time of both models, and the page's memory."""
    page = verified["runner"].get("browser")
    if not page:
        return None
    latency = verified["latency"]
    runners = {"reference": verified.get("reference_runner") or {}, "artifact": verified["runner"]}
    timed = {name: {k: latency[name][k] for k in ("p50_ms", "p90_ms")} for name in runners if latency.get(name)}
    return {
        **page,
        "latency_ms": timed,
        "speedup": latency.get("speedup"),
        "measured": latency.get("measured"),
        "load": {name: runner.get("load") for name, runner in runners.items()},
        "memory": verified["memory"],
    }


def build_report(
    recipe: Recipe,
    profile: DeviceProfile,
    source: SourceModel,
    canonical: CanonicalModel,
    data: DataPlan,
    built: Built,
    measured: Measured,
    verdict: Verdict,
    decisions: list[dict[str, str]],
    notes: list[str],
    timings: dict[str, float],
) -> dict[str, Any]:
    """Return the report document (report.json's content) from the results of the run's steps.

    ``timings`` are the steps' wall times with their total.
    """
    plan, artifact, verified = built.plan, built.artifact, measured.verified
    sizes = _size_section(built, measured, verdict)
    return make_report(
        {
            "status": "passed" if verdict.passed else "failed",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model": _model_section(recipe, source, canonical),
            "target": {
                "format": recipe.output_format,
                "quantization": recipe.quantization,
                "scheme": plan.scheme,
                "profile": profile.name,
                "artifact": built.backend.file_name,
            },
            "decisions": decisions,
            "data": _data_section(data),
            "precision_plan": {
                "applied": artifact.facts.get("applied") or None,
                "details": plan.details,
                "layers": {k: {"op": v.op, "precision": v.precision} for k, v in plan.layers.items()},
            },
            "fidelity": verified["fidelity"],
            "search": built.search_section,
            "op_check": measured.op_check,
            # What the artifact file really holds, read back from it (Core ML: ops, weight storage).
            "artifact_structure": artifact.facts.get("structure"),
            "pruning": measured.pruning_section,
            "tuning": measured.tuning,
            "profile": measured.profile_data,
            "gate": {
                "max_accuracy_drop": verdict.budget,
                "drop": verdict.drop,
                "metric": verdict.metric,
                "passed": verdict.passed,
                "max_size_bytes": verdict.size.budget.max_bytes if verdict.size else None,
                "size_passed": verdict.size.met if verdict.size else None,
            },
            "latency": verified["latency"],
            "browser": browser_section(verified),
            "load_time_s": verified["load_time_s"],
            "memory": verified["memory"],
            "size": sizes,
            "timings_s": timings,
            "notes": notes,
            "environment": {
                "edgeport": __version__,
                "libraries": library_versions(),
                "host": host_description(),
                "runner": verified["runner"],
            },
        }
    )


def build_manifest(
    report: dict[str, Any], recipe: Recipe, profile: DeviceProfile, built: Built, measured: Measured
) -> dict[str, Any]:
    """Return manifest.json's content (the bundle writer adds the file hashes): how to run the
    artifact and its fp32 references, the options and the headline figures of ``report``."""
    artifact, latency_reference, verified = built.artifact, measured.latency_reference, measured.verified
    file_name = built.backend.file_name
    return {
        "status": report["status"],
        "edgeport": __version__,
        "libraries": report["environment"]["libraries"],
        "profile": profile.as_dict(),
        "options": recipe.as_dict(),
        "artifact": file_name,
        "runner": {"kind": artifact.runner.kind, "file": file_name, "kwargs": artifact.runner.kwargs},
        "format_facts": artifact.facts,
        "reference_for_timing": Path(latency_reference.path).name,
        "reference_runner": {
            "kind": latency_reference.kind,
            "file": Path(latency_reference.path).name,
            "kwargs": latency_reference.kwargs,
        },
        # The fp32 baseline stays in the bundle: re-verification on a device compares against it.
        "baseline": BASELINE_NAME,
        "inputs": report["model"]["inputs"],
        "outputs": report["model"]["outputs"],
        # Batch and thread tuning's choice (None when not asked for), for the serving session to apply.
        "recommended_session_options": (measured.tuning or {}).get("recommended_session_options"),
        "metrics": {
            "fidelity": verified["fidelity"],
            "gate": report["gate"],
            "latency_speedup": verified["latency"]["speedup"],
        },
    }
