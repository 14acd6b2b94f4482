"""One conversion: ``run(recipe) -> Result``.

ingest -> normalize -> quantize (plan + apply) -> export -> verify -> report, written as
one bundle that appears atomically (or not at all).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx

import edgeport
from edgeport.bundle import BundleWriter
from edgeport.converters import ingest
from edgeport.converters.normalize import normalize
from edgeport.data import Dataset, load_dataset, parse_preprocess
from edgeport.errors import ConversionError, GateFailed, InputError
from edgeport.profiles import resolve_profile
from edgeport.profiles.schema import DeviceProfile
from edgeport.progress import Progress
from edgeport.quantize.onnx_apply import apply_plan
from edgeport.quantize.plan import uniform_plan
from edgeport.recipe import Recipe
from edgeport.reports.html import write_html
from edgeport.reports.json import make_report, write_report
from edgeport.verify.latency import measure_side_by_side
from edgeport.verify.memory import measure_peak_memory
from edgeport.verify.metrics import accuracy_drop, compare
from edgeport.verify.runners import OrtRunner, host_description

LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxslim", "onnxconverter-common", "numpy")
ARTIFACT_NAME = "model.onnx"
BASELINE_NAME = "baseline_fp32.onnx"
EVAL_BATCH = 32  # eval batch for models with a dynamic batch dimension
REFERENCE_SAMPLES = 8


@dataclass
class Result:
    """What one conversion produced: where the bundle is, its report and the gate verdict."""

    bundle_dir: Path
    report: dict[str, Any]
    passed: bool

    @property
    def artifact(self) -> Path:
        """The model file inside the bundle."""
        return self.bundle_dir / ARTIFACT_NAME


def library_versions() -> dict[str, str]:
    """Return the installed versions of the libraries that shape the artifact."""
    versions = {"edgeport": edgeport.__version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def model_display_name(input_model: str) -> str:
    """Return a short model name for folder names: the file stem or the factory's name."""
    path = Path(input_model)
    if path.exists():
        return path.stem
    return input_model.rpartition(":")[2] or path.stem


def default_output_dir(recipe: Recipe, profile: DeviceProfile) -> Path:
    """Return ``out/<model>-<format>-<quantization>-<profile>``."""
    scheme = "fp32" if recipe.quantization == "none" else recipe.quantization
    return Path("out") / f"{model_display_name(recipe.input_model)}-{recipe.output_format}-{scheme}-{profile.name}"


def usable_samples(count: int, batch: int, dynamic: bool) -> int:
    """Samples that can be fed: all with a dynamic batch, else whole batches only."""
    return count if dynamic else count - count % batch


def _run_all(runner: OrtRunner, dataset: Dataset, batch: int, dynamic: bool, progress=None) -> list[np.ndarray]:
    """Run ``runner`` over the dataset in batches; return each output concatenated."""
    outputs: list[list[np.ndarray]] = []
    usable = usable_samples(len(dataset), batch, dynamic)
    for start in range(0, usable, batch):
        stop = min(start + batch, usable)
        outputs.append(runner.run(dataset.batch(start, stop)))
        if progress:
            progress(stop - start)
    return [np.concatenate([o[i] for o in outputs]) for i in range(len(outputs[0]))]


def _check_scheme(recipe: Recipe, profile: DeviceProfile) -> None:
    if recipe.quantization not in profile.schemes:
        raise InputError(
            f"profile {profile.name} does not run --quantization {recipe.quantization}",
            hint=f"it runs: {', '.join(profile.schemes)}",
        )


def run(recipe: Recipe, progress: Progress | None = None) -> Result:
    """Convert, quantize, verify and report one model as ``recipe`` says; return the Result.

    Raises InputError (exit 2), ConversionError (exit 4) or, after writing the bundle,
    GateFailed (exit 3).
    """
    progress = progress or Progress()
    started = time.perf_counter()
    decisions: list[dict[str, str]] = []
    profile, why_profile = resolve_profile(recipe.optimize_for)
    decisions.append({"asked": f"--optimize_for {recipe.optimize_for}", "done": profile.name, "why": why_profile})
    _check_scheme(recipe, profile)
    preprocess = parse_preprocess(recipe.preprocess)
    output_dir = Path(recipe.output_dir) if recipe.output_dir else default_output_dir(recipe, profile)

    with BundleWriter(output_dir) as writer, tempfile.TemporaryDirectory(prefix="edgeport-") as work_name:
        work = Path(work_name)
        with progress.step("load model"):
            source, onnx_source = ingest(recipe)
        dynamic = all(s.has_dynamic_batch for s in source.inputs)
        static_batch = 1 if dynamic else int(source.inputs[0].shape[0]) if source.inputs[0].shape else 1
        batch_of = EVAL_BATCH if dynamic else static_batch
        eval_data = load_dataset(recipe.eval_data, source.inputs, recipe.eval_samples, preprocess,
                                 seed=recipe.seed, synthetic_count=128, batch=static_batch)
        calibration: Dataset | None = None
        if recipe.quantization == "int8":
            if recipe.calibration_data:
                calibration = load_dataset(recipe.calibration_data, source.inputs, recipe.calibration_samples,
                                           preprocess, seed=recipe.seed, batch=static_batch)
            elif recipe.eval_data:
                calibration = load_dataset(recipe.eval_data, source.inputs, recipe.calibration_samples, preprocess,
                                           seed=recipe.seed, batch=static_batch)
                decisions.append({"asked": "int8 without --calibration_data", "done": "calibrated on the eval data",
                                  "why": "no calibration set was given; accuracy measured on the same samples may be optimistic"})
            else:
                calibration = load_dataset(None, source.inputs, recipe.calibration_samples, preprocess,
                                           seed=recipe.seed + 1, batch=static_batch)
                decisions.append({"asked": "int8 without --calibration_data", "done": "calibrated on random inputs",
                                  "why": "no data was given; activation ranges from random inputs can be far from real ones"})
        reference_count = min(len(eval_data), REFERENCE_SAMPLES if dynamic else static_batch)
        if reference_count < static_batch:
            raise InputError(f"the eval data has {len(eval_data)} samples; the model's batch is {static_batch}")
        reference_feeds = eval_data.batch(0, reference_count)

        with progress.step("export to ONNX and check parity" if onnx_source is None else "check and simplify ONNX"):
            bundle, reference_outputs = normalize(source, onnx_source, reference_feeds, recipe)
        notes = list(bundle.notes)
        fp32_path = writer.path(BASELINE_NAME)
        onnx.save(bundle.onnx_model, str(fp32_path))

        plan = uniform_plan(bundle.onnx_model, recipe.quantization, profile)
        onnx.save(bundle.onnx_model, str(fp32_path))  # with the node names the plan refers to
        if recipe.quantization != "none":
            decisions.append({
                "asked": f"--quantization {recipe.quantization}",
                "done": f"{recipe.quantization}: " + ", ".join(f"{k}={v}" for k, v in plan.details.items()),
                "why": f"the scheme profile {profile.name} runs fast"
                + (f" ({profile.notes[0]})" if profile.notes else ""),
            })
        artifact_path = writer.path(ARTIFACT_NAME)
        calibration_total = len(calibration) if calibration is not None else None
        with progress.step(f"quantize ({recipe.quantization})", total=calibration_total) as advance:
            notes += apply_plan(fp32_path, plan, artifact_path, work, calibration, batch_of, advance)
        plan.save(writer.path("precision_plan.json"))

        with progress.step("load runtimes"):
            try:
                artifact_runner = OrtRunner(artifact_path, recipe.threads, profile.onnxruntime.execution_providers)
            except Exception as exc:
                raise ConversionError(f"ONNX Runtime cannot load the artifact: {str(exc).splitlines()[0]}") from exc
            reference_runner = OrtRunner(fp32_path, recipe.threads, profile.onnxruntime.execution_providers)
        usable = usable_samples(len(eval_data), batch_of, dynamic)
        with progress.step("evaluate fp32 and artifact", total=2 * usable) as advance:
            reference_all = _run_all(reference_runner, eval_data, batch_of, dynamic, advance)
            artifact_all = _run_all(artifact_runner, eval_data, batch_of, dynamic, advance)
        labels = eval_data.labels[: len(reference_all[0])] if eval_data.labels is not None else None
        fidelity = compare(reference_all, artifact_all, [o.name for o in bundle.outputs], labels)
        drop, drop_metric = accuracy_drop(fidelity)

        latency_feeds = eval_data.batch(0, static_batch)
        with progress.step("measure latency side by side", total=recipe.latency_runs) as advance:
            latency = measure_side_by_side({"reference": reference_runner, "artifact": artifact_runner},
                                           latency_feeds, recipe.latency_runs, recipe.warmup_runs, advance)
        feeds_path = work / "latency_feeds.npz"
        np.savez(feeds_path, **latency_feeds)
        with progress.step("measure peak memory"):
            memory = {name: measure_peak_memory(path, feeds_path, recipe.threads)
                      for name, path in (("reference", fp32_path), ("artifact", artifact_path))}

        passed = recipe.max_accuracy_drop is None or drop <= recipe.max_accuracy_drop + 1e-9
        reference_npz = {f"inputs/{k}": v for k, v in reference_feeds.items()}
        reference_npz.update({f"outputs/{o.name}": v for o, v in zip(bundle.outputs, reference_outputs)})
        if eval_data.labels is not None:
            reference_npz["labels"] = eval_data.labels[:reference_count]
        np.savez_compressed(writer.path("reference.npz"), **reference_npz)

        sizes = {"reference_bytes": fp32_path.stat().st_size, "artifact_bytes": artifact_path.stat().st_size}
        sizes["ratio"] = sizes["reference_bytes"] / sizes["artifact_bytes"]
        data_section = {"eval": eval_data.describe()}
        if calibration is not None:
            data_section["calibration"] = calibration.describe()
        if eval_data.synthetic:
            notes.append("fidelity was measured on random inputs: pass --eval_data for real figures")
        report = make_report({
            "status": "passed" if passed else "failed",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": {
                "name": model_display_name(recipe.input_model), "source": source.path, "framework": source.framework,
                "form": source.form, "sha256": source.sha256, "exporter": bundle.exporter, "parity": bundle.parity,
                "inputs": [s.as_dict() for s in bundle.inputs], "outputs": [s.as_dict() for s in bundle.outputs],
            },
            "target": {"format": recipe.output_format, "quantization": recipe.quantization,
                       "scheme": plan.scheme, "profile": profile.name, "artifact": ARTIFACT_NAME},
            "decisions": decisions,
            "data": data_section,
            "precision_plan": {"details": plan.details,
                               "layers": {k: {"op": v.op, "precision": v.precision} for k, v in plan.layers.items()}},
            "fidelity": fidelity,
            "gate": {"max_accuracy_drop": recipe.max_accuracy_drop, "drop": drop, "metric": drop_metric, "passed": passed},
            "latency": {
                "reference": latency["reference"], "artifact": latency["artifact"],
                "speedup": latency["reference"]["p50_ms"] / latency["artifact"]["p50_ms"],
                "measured": "measured", "runtime": f"onnxruntime {', '.join(artifact_runner.providers)}",
                "threads": recipe.threads, "batch": static_batch, "warmup": recipe.warmup_runs,
            },
            "load_time_s": {"reference": reference_runner.load_seconds, "artifact": artifact_runner.load_seconds},
            "memory": memory,
            "size": sizes,
            "timings_s": {**progress.timings, "total": round(time.perf_counter() - started, 3)},
            "notes": notes,
            "environment": {"edgeport": edgeport.__version__, "libraries": library_versions(),
                            "host": host_description(), "runner": artifact_runner.describe()},
        })
        write_report(report, writer.path("report.json"))
        write_html(report, writer.path("report.html"))
        # The baseline is a deliverable too (for re-verification on the device), so keep it.
        bundle_dir = writer.commit({
            "status": report["status"],
            "edgeport": edgeport.__version__,
            "libraries": report["environment"]["libraries"],
            "profile": profile.as_dict(),
            "options": recipe.as_dict(),
            "artifact": ARTIFACT_NAME,
            "baseline": BASELINE_NAME,
            "inputs": report["model"]["inputs"],
            "outputs": report["model"]["outputs"],
            "metrics": {"fidelity": fidelity, "gate": report["gate"], "latency_speedup": report["latency"]["speedup"]},
        })
    if not passed:
        raise GateFailed(
            f"accuracy gate failed: {drop_metric} is {drop:.3f} points > --max_accuracy_drop {recipe.max_accuracy_drop}",
            hint=f"the artifact is kept, marked failed, in {bundle_dir}",
            bundle_dir=str(bundle_dir),
        )
    return Result(bundle_dir, report, passed)


__all__ = ["run", "Result", "default_output_dir"]
