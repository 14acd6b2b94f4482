"""Quantize and export: choose the precision plan (a saved one, the auto search, or the profile's
uniform scheme) and build the artifact with the format's backend into the bundle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.bundle import BundleWriter, copy_path
from edgeport.core.contracts import Artifact, FormatBackend
from edgeport.core.model import CanonicalModel
from edgeport.core.plan import PrecisionPlan, load_plan, uniform_plan
from edgeport.core.progress import Progress
from edgeport.core.registry import backend_class
from edgeport.core.sizes import format_size
from edgeport.options.recipe import Recipe
from edgeport.pipeline.data import DataPlan
from edgeport.pipeline.gate import SizeBudget
from edgeport.profiles.schema import DeviceProfile
from edgeport.prune.stage import PruneResult
from edgeport.quantize.auto import auto_quantize, parse_search_budget, search_report
from edgeport.quantize.size_budget import size_section
from edgeport.verify.gate import Gate

BASELINE_NAME = "baseline_fp32.onnx"


def save_baseline(canonical: CanonicalModel, path: Path) -> None:
    """Save the fp32 model; one whose weights stayed in external data files (a big model) is
    saved with its data streamed into ``<path>.data``, never loaded."""
    from edgeport.frontends.normalize import weights_folder

    folder = weights_folder(canonical.onnx_model, canonical.source.path)
    if folder is None:
        onnx.save(canonical.onnx_model, str(path))
    else:
        from edgeport.formats.onnx.external import save_with_external_data

        save_with_external_data(canonical.onnx_model, folder, path)


def target_backend(profile: DeviceProfile, output_format: str) -> str | None:
    """The target backend the profile's section for ``output_format`` names (``backend: web``:
    core/registry.py ``TARGETS``), or None for the format's own."""
    section = profile.formats.get(output_format)
    return section.backend if section is not None and section.backend != "ort" else None


@dataclass
class Built:
    """The built artifact, the backend that built it and the plan it follows."""

    backend: FormatBackend
    plan: PrecisionPlan
    artifact: Artifact
    artifact_path: Path  # the artifact inside the bundle
    baseline_path: Path  # the unpruned fp32 ONNX model inside the bundle
    search_section: dict[str, Any] | None  # the report's "search" section (auto only)


def auto_decision(auto: Any, budget: float, profile: DeviceProfile, float_precision: str) -> dict[str, str]:
    """Return the report's decision line for ``--quantization auto``: what the search chose and why."""
    sized = size_section(auto.search.best, auto.search.points, auto.max_size, auto.max_size_source)
    asked = f"--quantization auto (budget {budget} points" + (
        f", size <= {format_size(auto.max_size)} from {auto.max_size_source})" if sized else ")"
    )
    size_why = f"; size: {sized['how_close']}" if sized and "how_close" in sized else ""
    if auto.fallback:
        float_name = "fp32" if auto.plan.scheme == "none" else auto.plan.scheme
        return {"asked": asked, "done": f"the float model ({float_name})", "why": auto.fallback_why + size_why}
    kept = [name for name, layer in auto.plan.layers.items() if layer.precision == float_precision]
    if sized and not sized["met"]:
        return {
            "asked": asked,
            "done": f"{auto.base_scheme} with {len(kept)} of {len(auto.plan.layers)} layers kept in {float_precision}",
            "why": f"no plan tried fits the size budget, so the smallest is returned ({len(auto.search.points)} "
            f"plans evaluated){size_why}",
        }
    return {
        "asked": asked,
        "done": f"{auto.base_scheme} with {len(kept)} of {len(auto.plan.layers)} layers kept in "
        f"{float_precision}" + (f": {', '.join(kept[:6])}" if kept else ""),
        "why": f"the fastest plan {profile.name} runs{' within the size budget' if sized else ''}, with the layers "
        "that hurt accuracy most per unit of "
        f"cost kept in float until the budget held ({len(auto.search.points)} plans evaluated)" + size_why,
    }


def scheme_decision(scheme: str, plan: PrecisionPlan, profile: DeviceProfile) -> dict[str, str]:
    """Return the report's decision line for a uniform scheme: how the profile says to run it."""
    details = ", ".join(f"{k}={v}" for k, v in plan.details.items())
    return {
        "asked": f"scheme {scheme} on {profile.name}",
        "done": details,
        "why": f"the way profile {profile.name} ({profile.source}) says its runtime runs {scheme} fast",
    }


def build_artifact(
    recipe: Recipe,
    profile: DeviceProfile,
    scheme: str,
    canonical: CanonicalModel,
    pruning: PruneResult | None,
    reference_feeds: dict[str, np.ndarray],
    data: DataPlan,
    gate: Gate,
    gate_budget: float | None,
    writer: BundleWriter,
    work: Path,
    progress: Progress,
    decisions: list[dict[str, str]],
    size: SizeBudget | None = None,
) -> Built:
    """Save the unpruned fp32 baseline into the bundle ``writer``, then quantize and export
    the (pruned, if any) model by a saved plan, the auto search within ``gate_budget``, or the
    uniform ``scheme``, adding the decisions made, and save the plan followed into the bundle.
    The auto search also keeps to the ``size`` budget. Returns what was built."""
    model = pruning.canonical if pruning else canonical
    backend_type = backend_class(recipe.output_format, target_backend(profile, recipe.output_format))
    backend = backend_type(profile, recipe.format_options(), model, reference_feeds)
    baseline_path, artifact_path = writer.path(BASELINE_NAME), writer.path(backend.file_name)
    save_baseline(canonical, baseline_path)
    model_path = pruning.path if pruning else baseline_path
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
        assert gate_budget is not None  # auto always has a budget (DEFAULT_BUDGET when none was given)
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
            max_size=size.max_bytes if size else None,
            max_size_source=size.source if size else None,
        )
        copy_path(auto.artifact.path, artifact_path)
        artifact = auto.artifact
        artifact.path = artifact_path
        artifact.runner.path = str(artifact_path)
        plan, search_section = auto.plan, search_report(auto)
        decisions.append(auto_decision(auto, gate_budget, profile, backend.float_precision))
    else:
        plan = uniform_plan(model.onnx_model, scheme, profile)
        if scheme != "none":
            decisions.append(scheme_decision(scheme, plan, profile))
        calibration_total = len(data.calibration) if data.calibration is not None else None
        with progress.step(f"quantize and export ({scheme}, {backend.format})", total=calibration_total) as advance:
            artifact = backend.build(model_path, plan, artifact_path, work, data.calibration, data.batch, advance)
    # Choices the backend made (a TFLite route, fixed input sizes), those of the search's other
    # candidates included: auto may keep an artifact built before a later candidate fell back.
    for decision in artifact.decisions + backend.run_decisions():
        if decision not in decisions:
            decisions.append(decision)
    backend.bundle_files(writer.tmp, artifact_path)  # what the target ships beside the artifact
    # Saved as soon as it is applied: its appearance in the partial bundle marks "quantized,
    # verifying now" (tests/pipeline/test_interrupts.py waits for it).
    plan.save(writer.path("precision_plan.json"))
    return Built(backend, plan, artifact, artifact_path, baseline_path, search_section)
