"""One conversion: ``run(recipe) -> Result``.

ingest -> normalize -> quantize (plan + apply) -> export -> verify -> report, written as
one bundle that appears atomically (or not at all).
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core import limits
from edgeport.core.bundle import BundleWriter, copy_path, path_bytes
from edgeport.core.contracts import Artifact
from edgeport.core.errors import ConversionError, GateFailed, InputError
from edgeport.core.model_bundle import SourceModel, batch_axes
from edgeport.core.plan import CALIBRATED_SCHEMES, PrecisionPlan, ensure_node_names, load_plan, uniform_plan
from edgeport.core.progress import Progress
from edgeport.core.registry import backend_class
from edgeport.core.runner_spec import RunnerSpec
from edgeport.core.version import __version__
from edgeport.data.dataset import Dataset
from edgeport.data.load import load_dataset
from edgeport.data.preprocess import parse_preprocess
from edgeport.frontends import ingest
from edgeport.frontends.normalize import normalize
from edgeport.options.recipe import Recipe
from edgeport.profiles import resolve_profile, resolve_scheme
from edgeport.profiles.schema import DeviceProfile
from edgeport.prune.stage import prune_stage
from edgeport.quantize.auto import DEFAULT_BUDGET, auto_quantize, parse_search_budget, search_report
from edgeport.reports.html import write_html
from edgeport.reports.json import make_report, write_report
from edgeport.runtime.host import host_description
from edgeport.verify.evaluate import verify_artifact
from edgeport.verify.gate import choose_gate
from edgeport.verify.metrics import accuracy_drop

LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxslim", "onnxconverter-common", "numpy")
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
        return self.bundle_dir / self.report["target"]["artifact"]


@dataclass
class DataPlan:
    """The datasets of one run and how they are batched."""

    eval_data: Dataset
    calibration: Dataset | None
    dynamic: bool  # every input has a symbolic batch dimension (at any axis)
    static_batch: int  # the batch the model declares (1 when dynamic or when an input has no batch axis)

    @property
    def batch(self) -> int:
        """Batch used for evaluation and calibration."""
        return EVAL_BATCH if self.dynamic else self.static_batch


def library_versions() -> dict[str, str]:
    """Return the installed versions of the libraries that shape the artifact."""
    versions = {"edgeport": __version__}
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


def _open_data(recipe: Recipe, scheme: str, source: SourceModel, decisions: list[dict[str, str]]) -> DataPlan:
    """Open the eval and (for int8) calibration data; record any fallback as a decision."""
    preprocess = parse_preprocess(recipe.preprocess)
    # The batch may sit at any axis (a state [2, batch, 128]); an input without one (a rank-0
    # sample rate) makes the model run one sample at a time.
    axes = batch_axes(source.inputs)
    dynamic = all(axes[s.name] is not None and isinstance(s.shape[axes[s.name]], str) for s in source.inputs)
    declared = [s.shape[axes[s.name]] for s in source.inputs if axes[s.name] is not None]
    static_batch = 1 if dynamic else next((d for d in declared if isinstance(d, int)), 1)

    def open_(path: str | None, limit: int | None, seed: int, synthetic_count: int = 64) -> Dataset:
        return load_dataset(
            path,
            source.inputs,
            limit,
            preprocess,
            seed,
            synthetic_count,
            static_batch,
            text_encoder=source.tokenize,
            dim_sizes=source.dim_sizes,
        )

    eval_data = open_(recipe.eval_data, recipe.eval_samples, recipe.seed, synthetic_count=128)
    calibration = None
    if scheme in (*CALIBRATED_SCHEMES, "auto") or recipe.precision_plan:
        if recipe.calibration_data:
            calibration = open_(recipe.calibration_data, recipe.calibration_samples, recipe.seed)
        elif recipe.eval_data:
            calibration = open_(recipe.eval_data, recipe.calibration_samples, recipe.seed)
            why = "no calibration set was given; accuracy measured on the same samples may be optimistic"
            decisions.append(
                {"asked": f"{scheme} without --calibration_data", "done": "calibrated on the eval data", "why": why}
            )
        else:
            calibration = open_(None, recipe.calibration_samples, recipe.seed + 1)
            why = "no data was given; activation ranges from random inputs can be far from real ones"
            decisions.append(
                {"asked": f"{scheme} without --calibration_data", "done": "calibrated on random inputs", "why": why}
            )
    if len(eval_data) < static_batch:
        raise InputError(f"the eval data has {len(eval_data)} samples; the model's batch is {static_batch}")
    return DataPlan(eval_data, calibration, dynamic, static_batch)


def _auto_decision(auto: Any, budget: float, profile: DeviceProfile, float_precision: str) -> dict[str, str]:
    """The report's decision line for ``--quantization auto``: what the search chose and why."""
    asked = f"--quantization auto (budget {budget} points)"
    if auto.fallback:
        float_name = "fp32" if auto.plan.scheme == "none" else auto.plan.scheme
        return {"asked": asked, "done": f"the float model ({float_name})", "why": auto.fallback_why}
    kept = [name for name, layer in auto.plan.layers.items() if layer.precision == float_precision]
    return {
        "asked": asked,
        "done": f"{auto.base_scheme} with {len(kept)} of {len(auto.plan.layers)} layers kept in "
        f"{float_precision}" + (f": {', '.join(kept[:6])}" if kept else ""),
        "why": f"the fastest plan {profile.name} runs, with the layers that hurt accuracy most per unit of "
        f"cost kept in float until the budget held ({len(auto.search.points)} plans evaluated)",
    }


def _scheme_decision(scheme: str, plan: PrecisionPlan, profile: DeviceProfile) -> dict[str, str]:
    details = ", ".join(f"{k}={v}" for k, v in plan.details.items())
    return {
        "asked": f"scheme {scheme} on {profile.name}",
        "done": details,
        "why": f"the way profile {profile.name} ({profile.source}) says its runtime runs {scheme} fast",
    }


def _save_reference(
    path: Path,
    feeds: dict[str, np.ndarray],
    output_names: list[str],
    outputs: list[np.ndarray],
    labels: np.ndarray | None,
) -> None:
    """Write reference.npz: ``inputs/<name>``, the source's ``outputs/<name>``, and ``labels``."""
    arrays = {f"inputs/{k}": v for k, v in feeds.items()}
    arrays.update({f"outputs/{name}": v for name, v in zip(output_names, outputs, strict=True)})
    if labels is not None:
        arrays["labels"] = labels[: len(next(iter(feeds.values())))]
    np.savez_compressed(path, **arrays)


# Write failures that mean "the disk (or the file size limit) is full", not a bug.
_DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def run(recipe: Recipe, progress: Progress | None = None) -> Result:
    """Convert, quantize, verify and report one model as ``recipe`` says; return the Result.

    Raises InputError (exit 2), ConversionError (exit 4) or, after writing the bundle,
    GateFailed (exit 3). A full disk is an InputError and running out of memory a
    ConversionError; either way no bundle is left behind.
    """
    try:
        return _run(recipe, progress)
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


def _run(recipe: Recipe, progress: Progress | None = None) -> Result:
    """The body of :func:`run`."""
    progress = progress or Progress()
    started = time.perf_counter()
    decisions: list[dict[str, str]] = []
    profile, why_profile = resolve_profile(recipe.optimize_for)
    decisions.append({"asked": f"--optimize_for {recipe.optimize_for}", "done": profile.name, "why": why_profile})
    resolution = resolve_scheme(profile, recipe.quantization, recipe.output_format)
    if resolution.decision:
        decisions.append(resolution.decision)
    scheme = resolution.scheme
    output_dir = Path(recipe.output_dir) if recipe.output_dir else default_output_dir(recipe, profile)
    memory_limit = limits.memory_limit(recipe.max_memory)
    limits.check_input_model(recipe.input_model, memory_limit)  # before anything is loaded

    with BundleWriter(output_dir) as writer, tempfile.TemporaryDirectory(prefix="edgeport-") as work_name:
        work = Path(work_name)
        with progress.step("load model"):
            source, onnx_source = ingest(recipe)
        decisions += source.decisions
        limits.check_inputs(source.inputs, EVAL_BATCH, memory_limit)  # before data is made for them
        data = _open_data(recipe, scheme, source, decisions)
        reference_count = min(len(data.eval_data), REFERENCE_SAMPLES if data.dynamic else data.static_batch)
        reference_feeds = data.eval_data.batch(*data.eval_data.spans(reference_count)[0])  # samples of one shape

        with progress.step("export to ONNX and check parity" if onnx_source is None else "check and simplify ONNX"):
            bundle, reference_outputs = normalize(source, onnx_source, reference_feeds, recipe)
        for dataset in (data.eval_data, data.calibration):
            if dataset is not None:
                dataset.set_outputs(bundle.outputs)  # outputs are joined over runs along their batch axis
        notes = list(bundle.notes)
        decisions += bundle.decisions
        ensure_node_names(bundle.onnx_model)  # plans and quantizers address nodes by name
        output_names = [o.name for o in bundle.outputs]
        gate = choose_gate(
            bundle.onnx_model,
            output_names,
            reference_outputs,
            metric=recipe.metric,
            budget=recipe.max_accuracy_drop,
            labels=data.eval_data.labels is not None,
            output_kind=source.output_kind,
        )
        decisions += gate.decisions
        # --- prune (edgeport/prune): quantization and export start from `model` (the pruned
        # model); the fp32 reference for fidelity, latency and parity stays the original `bundle`.
        pruning = (
            prune_stage(recipe, bundle, reference_feeds, data, profile, scheme, decisions, writer.tmp, progress, gate)
            if recipe.prune
            else None
        )
        model = pruning.bundle if pruning else bundle
        # --- end prune
        # samples: sizes for dynamic dims
        backend = backend_class(recipe.output_format)(profile, recipe, model, reference_feeds)
        baseline_path, artifact_path = writer.path(BASELINE_NAME), writer.path(backend.file_name)
        onnx.save(bundle.onnx_model, str(baseline_path))
        model_path = pruning.path if pruning else baseline_path
        artifact: Artifact | None = None
        gate_budget = recipe.max_accuracy_drop
        search_section = None
        if recipe.precision_plan:
            plan = load_plan(Path(recipe.precision_plan), model.onnx_model, recipe.output_format)
            decisions.append(
                {
                    "asked": f"--precision_plan {recipe.precision_plan}",
                    "done": f"re-applied ({plan.scheme})",
                    "why": "a saved plan is applied as it is, without a search",
                }
            )
            with progress.step(f"quantize and export (plan: {plan.scheme})"):
                artifact = backend.build(model_path, plan, artifact_path, work, data.calibration, data.batch)
        elif scheme == "auto":
            gate_budget = DEFAULT_BUDGET if recipe.max_accuracy_drop is None else recipe.max_accuracy_drop
            auto = auto_quantize(
                model_path,
                model.onnx_model,
                profile,
                backend=backend,
                eval_data=data.eval_data,
                calibration=data.calibration,
                batch=data.batch,
                dynamic=data.dynamic,
                latency_batch=data.static_batch,
                threads=recipe.threads,
                budget=pruning.quantization_budget(gate_budget) if pruning else gate_budget,
                search_budget=parse_search_budget(recipe.search_budget),
                work=work,
                progress=progress,
                gate=gate,
            )
            copy_path(auto.artifact.path, artifact_path)
            artifact = auto.artifact
            artifact.path = artifact_path
            artifact.runner.path = str(artifact_path)
            plan, search_section = auto.plan, search_report(auto)
            decisions.append(_auto_decision(auto, gate_budget, profile, backend.float_precision))
        else:
            plan = uniform_plan(model.onnx_model, scheme, profile)
            if scheme != "none":
                decisions.append(_scheme_decision(scheme, plan, profile))
            calibration_total = len(data.calibration) if data.calibration is not None else None
            with progress.step(f"quantize and export ({scheme}, {backend.format})", total=calibration_total) as advance:
                artifact = backend.build(model_path, plan, artifact_path, work, data.calibration, data.batch, advance)
        assert artifact is not None
        notes += artifact.notes
        decisions += artifact.decisions  # choices the backend made (a TFLite route, fixed input sizes)
        for layer, why in (artifact.facts.get("not_expressible") or {}).items():
            notes.append(f"plan not followed for {layer}: {why}")
        plan.save(writer.path("precision_plan.json"))
        with progress.step("fp32 reference for timing"):
            latency_reference, reference_file = backend.fp32_reference(baseline_path, writer.tmp, work)

        verified = verify_artifact(
            RunnerSpec("onnxruntime", str(baseline_path)),
            latency_reference,
            artifact.runner,
            data.eval_data,
            output_names,
            batch=data.batch,
            dynamic=data.dynamic,
            latency_batch=data.static_batch,
            threads=recipe.threads,
            measured_label=backend.measured_label,
            latency_runs=recipe.latency_runs,
            warmup_runs=recipe.warmup_runs,
            work=work,
            progress=progress,
            emulation=artifact.emulation,
            gate=gate,
        )
        op_check = backend.check_ops(artifact_path)
        profile_data = None
        if backend.kernel_profiler:
            with progress.step(f"profile kernels ({backend.kernel_profiler})"):
                profile_data = backend.profile_kernels(
                    baseline_path,
                    artifact_path,
                    data.eval_data.batch(0, data.static_batch),
                    recipe.threads,
                    {name: layer.nodes for name, layer in plan.layers.items()},
                )
        for flag in op_check["flagged"]:
            notes.append(f"op check: {flag['count']} x {flag['op']}: {flag['why']}")
        drop, drop_metric = accuracy_drop(verified["fidelity"])
        # With a budget the user set, returning the float model because no quantized plan met it
        # fails the run (exit 3): they asked for a quantized artifact within that budget.
        budget_unmet = bool(search_section and search_section["float_fallback"] == "budget")
        passed = (gate_budget is None or drop <= gate_budget + 1e-9) and not (
            budget_unmet and recipe.max_accuracy_drop is not None
        )
        speedup = verified["latency"].get("speedup")
        if scheme not in ("none", "auto") and speedup is not None and speedup < 1.0:
            notes.append(
                f"the {scheme} artifact ran at {speedup:.2f}x the speed of fp32 in the same runtime: quantization does "
                "not pay for this model here; --quantization auto returns the float model in such cases"
            )
        _save_reference(
            writer.path("reference.npz"), reference_feeds, output_names, reference_outputs, data.eval_data.labels
        )

        sizes = {
            "reference_bytes": path_bytes(latency_reference.path),
            "artifact_bytes": path_bytes(artifact_path),
            "reference_file": Path(latency_reference.path).name,
        }
        sizes["ratio"] = sizes["reference_bytes"] / sizes["artifact_bytes"]
        data_section = {"eval": data.eval_data.describe()}
        if data.calibration is not None:
            data_section["calibration"] = data.calibration.describe()
        if data.eval_data.synthetic:
            notes.append("fidelity was measured on random inputs: pass --eval_data for real figures")
        report = make_report(
            {
                "status": "passed" if passed else "failed",
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "model": {
                    "name": model_display_name(recipe.input_model),
                    "source": source.path,
                    "framework": source.framework,
                    "form": source.form,
                    "sha256": source.sha256,
                    "exporter": bundle.exporter,
                    "parity": bundle.parity,
                    "inputs": [s.as_dict() for s in bundle.inputs],
                    "outputs": [s.as_dict() for s in bundle.outputs],
                },
                "target": {
                    "format": recipe.output_format,
                    "quantization": recipe.quantization,
                    "scheme": plan.scheme,
                    "profile": profile.name,
                    "artifact": backend.file_name,
                },
                "decisions": decisions,
                "data": data_section,
                "precision_plan": {
                    "applied": artifact.facts.get("applied") or None,
                    "details": plan.details,
                    "layers": {k: {"op": v.op, "precision": v.precision} for k, v in plan.layers.items()},
                },
                "fidelity": verified["fidelity"],
                "search": search_section,
                "op_check": op_check,
                # What the artifact file really holds, read back from it (Core ML: ops, weight storage).
                "artifact_structure": artifact.facts.get("structure"),
                "pruning": pruning.finish(
                    verified, artifact_path, f"pruned + {plan.scheme} ({backend.format})", recipe.metric
                )
                if pruning
                else None,
                "profile": profile_data,
                "gate": {
                    "max_accuracy_drop": gate_budget,
                    "drop": drop,
                    "metric": drop_metric,
                    "passed": passed,
                },
                "latency": verified["latency"],
                "load_time_s": verified["load_time_s"],
                "memory": verified["memory"],
                "size": sizes,
                "timings_s": {**progress.timings, "total": round(time.perf_counter() - started, 3)},
                "notes": notes,
                "environment": {
                    "edgeport": __version__,
                    "libraries": library_versions(),
                    "host": host_description(),
                    "runner": verified["runner"],
                },
            }
        )
        write_report(report, writer.path("report.json"))
        write_html(report, writer.path("report.html"))
        # The fp32 baseline stays in the bundle: re-verification on a device compares against it.
        bundle_dir = writer.commit(
            {
                "status": report["status"],
                "edgeport": __version__,
                "libraries": report["environment"]["libraries"],
                "profile": profile.as_dict(),
                "options": recipe.as_dict(),
                "artifact": backend.file_name,
                "runner": {"kind": artifact.runner.kind, "file": backend.file_name, "kwargs": artifact.runner.kwargs},
                "format_facts": artifact.facts,
                "reference_for_timing": Path(latency_reference.path).name,
                "reference_runner": {
                    "kind": latency_reference.kind,
                    "file": Path(latency_reference.path).name,
                    "kwargs": latency_reference.kwargs,
                },
                "baseline": BASELINE_NAME,
                "inputs": report["model"]["inputs"],
                "outputs": report["model"]["outputs"],
                "metrics": {
                    "fidelity": verified["fidelity"],
                    "gate": report["gate"],
                    "latency_speedup": verified["latency"]["speedup"],
                },
            }
        )
    if not passed and budget_unmet and drop <= gate_budget + 1e-9:
        raise GateFailed(
            f"no quantized plan met --max_accuracy_drop {gate_budget}; the bundle holds the float model",
            hint=f"{search_section['float_fallback_why']}; the bundle is kept, marked failed, in {bundle_dir}",
            bundle_dir=str(bundle_dir),
        )
    if not passed:
        raise GateFailed(
            f"accuracy gate failed: {drop_metric} is {drop:.3f} points, over the budget of {gate_budget}"
            + (
                f"; layers that block it: {', '.join(search_section['blocking_layers'])}"
                if search_section and search_section["blocking_layers"]
                else ""
            ),
            hint=f"the artifact is kept, marked failed, in {bundle_dir}",
            bundle_dir=str(bundle_dir),
        )
    return Result(bundle_dir, report, passed)
