"""``--quantization auto``: sensitivity, then the mixed-precision search, with each candidate
built by the output format's backend and measured on this host (fidelity on the eval data
against the fp32 ONNX model; latency side by side with fp32 in the same runtime)."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.errors import ConversionError, InputError
from edgeport.core.plan import PrecisionPlan, uniform_plan
from edgeport.core.progress import Progress
from edgeport.core.registry import backend_class
from edgeport.core.sizes import artifact_bytes
from edgeport.data.dataset import Dataset
from edgeport.profiles import op_class
from edgeport.profiles.schema import DeviceProfile
from edgeport.quantize import size_budget as sized
from edgeport.quantize.candidates import CandidateEvaluator
from edgeport.quantize.floor import float_fallback
from edgeport.quantize.islands import boundary_macs
from edgeport.quantize.search import SearchPoint, SearchResult, search
from edgeport.quantize.sensitivity import layer_sensitivity
from edgeport.quantize.sensitivity_cache import (
    load_cached_sensitivity,
    sensitivity_cache_path,
    store_cached_sensitivity,
)
from edgeport.quantize.smoothing import DEFAULT_ALPHA, smooth, smoothable_groups
from edgeport.runtime.ort import OrtRunner
from edgeport.verify.gate import DEFAULT_BUDGET, Gate

SENSITIVITY_SAMPLES = 16
# An untimed all-compressed start whose drop is within this many budgets is searched from (the
# Fashion-MNIST CNN: 4-bit palettization 1.3 points -> 1.0 with one layer kept in fp16).
RECOVERABLE = 5.0
# Relative cost per MAC on a CPU when the profile gives none (fp32 = 1): int8 GEMMs ran
# ~3.75x faster than fp32 here (../shared/STACK.md); dynamic pays run-time quantization.
DEFAULT_COSTS = {
    "fp32": 1.0,
    "fp16": 1.0,
    "int8": 0.27,
    "int8-dynamic": 0.35,
    "int8-weight": 1.0,
    "int4-weight": 1.0,
    "int16": 0.6,
}


@dataclass
class SearchBudget:
    """Caps on the search: full evaluations and wall time."""

    evaluations: int = 10
    seconds: float = 900.0


def parse_search_budget(value: str | int | None) -> SearchBudget:
    """Parse ``--search_budget``: ``12`` (evaluations), ``300s`` (seconds) or ``12,300s``."""
    budget = SearchBudget()
    if value is None:
        return budget
    for part in str(value).split(","):
        part = part.strip().lower()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m)?", part)
        if not match:
            raise InputError(f"bad --search_budget {value!r}", hint="e.g. 12 (evaluations), 300s, or 12,300s")
        number = float(match.group(1))
        if match.group(2):
            budget.seconds = number * (60 if match.group(2) == "m" else 1)
        else:
            budget.evaluations = int(number)
    if budget.evaluations < 1 or budget.seconds <= 0:
        raise InputError("--search_budget must allow at least one evaluation")
    return budget


@dataclass
class AutoResult:
    """What the auto search produced for the pipeline."""

    plan: PrecisionPlan
    artifact: Any  # core.contracts.Artifact of the chosen point
    search: SearchResult
    base_scheme: str
    base_points: dict[str, dict[str, Any]]
    sensitivity: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    # Set when the float model was returned: "budget" (no quantized plan met it) or "speed" (the
    # best one that did was not faster than fp32), with the sentence for the report.
    fallback: str | None = None
    fallback_why: str = ""
    max_size: int | None = None  # the size budget (bytes) the plans were held to
    max_size_source: str | None = None  # "--max_size" or "profile <name>"


def layer_op_classes(model: onnx.ModelProto, plan: PrecisionPlan) -> dict[str, str]:
    """The profile op class of each planned layer (a Conv with one input channel per group
    is ``depthwise_conv``)."""
    nodes = {n.name: n for n in model.graph.node}
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    classes = {}
    for name, layer in plan.layers.items():
        node = nodes.get(layer.nodes[0]) if layer.nodes else None
        attrs: dict[str, Any] = {}
        if node is not None:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if len(node.input) > 1 and node.input[1] in shapes:
                attrs["weight_shape"] = shapes[node.input[1]]
        classes[name] = op_class(layer.op, attrs)
    return classes


def cost_function(profile: DeviceProfile, model: onnx.ModelProto, plan: PrecisionPlan) -> Callable[[str, str], float]:
    """Per-layer relative cost per MAC from the profile's op-class table; a precision the
    profile does not list for that class costs like fp32 (it would not run natively)."""
    classes = layer_op_classes(model, plan)

    def cost(layer: str, precision: str) -> float:
        op = classes.get(layer, "other")
        try:
            value = profile.cost(op, precision)
        except ValueError:
            value = None
        if value is None:
            value = profile.cost(op, "fp32") or 1.0
        return float(value)

    return cost


def auto_candidates(
    profile: DeviceProfile, output_format: str, have_calibration: bool, max_size: int | None = None
) -> list[str]:
    """The all-quantized schemes the search may start from, fastest first, that the profile
    runs for ``output_format``; under a size budget (or with no int8 scheme at all) also the
    weight-only schemes, which shrink the file most."""
    target = profile.formats.get(output_format)
    runs = target.schemes if target is not None else profile.schemes
    schemes = [s for s in ("int8", "int8-dynamic") if s in runs]
    if not have_calibration:
        schemes = [s for s in schemes if s != "int8"]  # static ranges from random inputs are not real
    schemes += sized.size_schemes(runs, max_size, any(s in runs for s in ("int8", "int8-dynamic")))
    if not schemes:
        raise InputError(
            f"profile {profile.name} runs no int8 scheme for {output_format} (--quantization auto)",
            hint="pass real --calibration_data for static int8, or choose another scheme",
        )
    return schemes


VARIANT_KEYS = ("smoothing", "weight_rounding", "bias_correction", "calibration", "percentile", "embeddings")
# Bias correction + percentile ranges: what took EfficientNet-Lite0 from 0.778 to 0.95 top-1
# agreement (bench/results/efficientnet_explore.md); smoothing: MiniLM's activation outliers.
CORRECTED_STATIC = {"bias_correction": True, "calibration": "percentile", "percentile": 99.99}


MEASURED_SENSITIVITY_MAX_LAYERS = 64


def measured_sensitivity(
    baseline: Path,
    plan: PrecisionPlan,
    backend: Any,
    work: Path,
    calibration: Dataset | None,
    batch: int,
    feeds: list[dict[str, np.ndarray]],
    reference_runner: OrtRunner,
) -> dict[str, float]:
    """Quantize one layer at a time (the rest fp32) with the chosen scheme and options, and
    return each layer's output error (1 - mean cosine of the first output) on ``feeds``.

    The simulation misses what the runtime does around a layer (fusions, removed activations,
    requantization); this measures it. Used for models of up to 64 weighted layers.
    """
    from edgeport.verify.metrics import cosine_per_sample

    reference = [reference_runner.run(f)[0] for f in feeds]
    losses = {}
    for name in plan.layers:
        single = copy.deepcopy(plan)
        for other, layer in single.layers.items():
            layer.precision = plan.scheme if other == name else "fp32"
        path = work / f"sensitivity{Path(backend.file_name).suffix}"
        artifact = backend.build(baseline, single, path, work, calibration, batch)
        runner = artifact.runner.open(1)
        cosines = [
            cosine_per_sample(r.reshape(len(r), -1), runner.run(f)[0].reshape(len(r), -1)).mean()
            for r, f in zip(reference, feeds, strict=True)
        ]
        losses[name] = float(1.0 - np.mean(cosines))
    return losses


def proxy_onnx_backend() -> Any:
    """An ONNX backend on ONNX Runtime's CPU provider, to measure layers for another format."""
    return backend_class("onnx")(providers=["CPUExecutionProvider"])


PASS_THROUGH = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Identity")


def depthwise_companions(model: onnx.ModelProto, plan: PrecisionPlan) -> dict[str, list[str]]:
    """For each depthwise conv layer: the weighted layers that feed it and that it feeds
    (through activations). A depthwise conv kept in float alone between int8 convs ran badly
    under ONNX Runtime's full graph optimization (EfficientNet-Lite0: 0.92 -> 0.62 top-1
    agreement; 0.95 with its neighbours in float too), so it goes to float with them."""
    layer_of = {node: name for name, layer in plan.layers.items() for node in layer.nodes}
    producers = {out: n for n in model.graph.node for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}

    def upstream(tensor: str) -> str | None:
        node = producers.get(tensor)
        while node is not None and node.op_type in PASS_THROUGH:
            node = producers.get(node.input[0])
        return layer_of.get(node.name) if node is not None else None

    def downstream(tensor: str) -> list[str]:
        found = []
        for node in consumers.get(tensor, []):
            if node.op_type in PASS_THROUGH:
                found += downstream(node.output[0])
            elif node.name in layer_of:
                found.append(layer_of[node.name])
        return found

    companions: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.name not in layer_of:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = shapes.get(node.input[1], [])
        if group > 1 and len(weight) > 1 and weight[1] == 1:
            neighbours = [upstream(node.input[0]), *downstream(node.output[0])]
            companions[layer_of[node.name]] = [n for n in neighbours if n and n != layer_of[node.name]]
    return companions


def start_variants(scheme: str, model: onnx.ModelProto, real_calibration: bool, weight_rounding: bool) -> list[dict]:
    """The all-quantized starting points tried for ``scheme``: plain, plus the accuracy
    techniques that apply to this model (they need real calibration data); every format
    applies them (edgeport/quantize/rewrites.py, percentile ranges in each calibrator; TFLite
    corrects biases and rounds weights on its int8 file, formats/tflite/bias.py)."""
    variants: list[dict] = [{}]
    if scheme == "int4-weight" and sized.embedding_gathers(model):
        # A size start: embedding tables in 4 bits too (ORT stores Gather tables in 4 bits only).
        variants.append({"embeddings": True})
    if not real_calibration:
        return variants
    if scheme == "int8" and any(n.op_type == "Conv" for n in model.graph.node):
        # EfficientNet-Lite0 int8 TFLite, held-out top-1 agreement: 0.76 plain, 0.81 with
        # percentile ranges, 0.92 with bias correction too.
        variants.append(dict(CORRECTED_STATIC))
        if weight_rounding:
            # GPTQ rounding on the int8 TFLite model (formats/tflite/rounding.py): logit
            # cosine 0.9974 -> 0.9980 on EfficientNet-Lite0 over bias correction alone.
            variants.append({**CORRECTED_STATIC, "weight_rounding": "gptq"})
    # Smoothing moves activation outliers into weights: no help to weight-only schemes (float activations).
    if smoothable_groups(model) and scheme not in sized.SIZE_SCHEMES:
        variants.append({"smoothing": {"alpha": DEFAULT_ALPHA}})
    return variants


def variant_name(scheme: str, variant: dict) -> str:
    """A readable name for a starting point, e.g. ``int8+bias_correction+percentile 99.99``."""
    parts = [scheme]
    if variant.get("smoothing"):
        parts.append(f"smoothing(alpha {variant['smoothing']['alpha']})")
    if variant.get("weight_rounding"):
        parts.append(variant["weight_rounding"])
    if variant.get("bias_correction"):
        parts.append("bias_correction")
    if variant.get("calibration") == "percentile":
        parts.append(f"percentile {variant.get('percentile')}")
    if variant.get("embeddings"):
        parts.append("embeddings")
    return "+".join(parts)


def _sensitivity_feeds(calibration: Dataset | None, eval_data: Dataset) -> list[dict[str, np.ndarray]]:
    """The single samples sensitivity is measured on: calibration samples, else eval samples."""
    return [
        calibration.batch(i, i + 1) if calibration is not None else eval_data.batch(i, i + 1)
        for i in range(min(SENSITIVITY_SAMPLES, len(calibration or eval_data)))
    ]


def _search_starts(
    model: onnx.ModelProto,
    profile: DeviceProfile,
    backend: Any,
    evaluate: Callable[[PrecisionPlan], SearchPoint],
    calibration: Dataset | None,
    budget: float,
    progress: Progress,
    max_size: int | None = None,
) -> tuple[list[str], dict[str, dict[str, Any]], tuple[str, PrecisionPlan, SearchPoint] | None]:
    """Build and measure every all-quantized starting point (each scheme, each variant).
    Returns the schemes, each start's figures (or failure) by name, and the start the search
    begins from (scheme, plan, point), or None when every start failed."""
    base_points: dict[str, dict[str, Any]] = {}
    best_base: tuple[str, PrecisionPlan, SearchPoint] | None = None
    best_rank: tuple = ()
    real_calibration = calibration is not None and not calibration.synthetic
    with progress.step("quantize every layer (search start)"):
        bind = sized.binding_budget(evaluate.baseline, max_size)  # weight-only starts only where it binds
        schemes = (
            # The backend may order its own (Core ML: weight compressions).
            backend.auto_schemes(real_calibration) or auto_candidates(profile, backend.format, real_calibration, bind)
        )
        for order, scheme in enumerate(schemes):
            variants = (
                start_variants(scheme, model, real_calibration, backend.weight_rounding)
                if backend.plan_variants
                else [{}]
            )
            for variant in variants:
                plan = uniform_plan(model, scheme, profile)
                plan.details.update(variant)
                point = evaluate(plan)
                key = variant_name(scheme, variant)
                if point.metrics.get("failed"):  # failed to build or run: skipped
                    base_points[key] = {"failed": point.metrics["failed"]}
                    continue
                point.feasible = point.drop <= budget + 1e-9 and sized.fits(point.size_bytes, max_size)
                base_points[key] = {"drop": point.drop, "speedup": point.speedup, "size_bytes": point.size_bytes}
                # Untimed candidates (Core ML off macOS) come most compressed first: the first whose
                # drop the search can plausibly recover by keeping layers in float starts it, else
                # the most accurate one. Timed ones rank by measured speedup. Under a size budget a
                # start that fits beats any that does not (size_budget.start_rank).
                rank = sized.start_rank(point, order, budget, RECOVERABLE, max_size)
                if best_base is None or rank > best_rank:
                    best_base, best_rank = (scheme, plan, point), rank
    return schemes, base_points, best_base


def _every_start_failed(
    model: onnx.ModelProto,
    profile: DeviceProfile,
    schemes: list[str],
    base_points: dict[str, dict[str, Any]],
    evaluate: CandidateEvaluator,
    budget: float,
    progress: Progress,
) -> AutoResult:
    """Every all-quantized start failed to build or run: nothing to search from, so the float
    model is the answer, and the decision names the failures."""
    failures = "; ".join(f"{k}: {v['failed']}" for k, v in base_points.items())
    failed = SearchPoint([], math.inf, False, None, None, None, {"failed": failures[:600], "notes": []})
    result = SearchResult(failed, [failed], [], False, "every quantized candidate failed", budget)
    plan = uniform_plan(model, schemes[0], profile)
    return _with_float_fallback(
        AutoResult(plan, None, result, schemes[0], base_points, {}, []),
        result, model, profile, evaluate.float_precision, evaluate, budget, progress,
    )  # fmt: skip


def _plan_sensitivity(
    plan: PrecisionPlan,
    scheme: str,
    base_feasible: bool,
    evaluate: CandidateEvaluator,
    feeds: list[dict[str, np.ndarray]],
    progress: Progress,
) -> tuple[dict[str, Any], str]:
    """Per-layer sensitivity of ``plan`` (cached per model, plan and format): simulated, and
    measured one layer at a time when the search will need the order (the start misses the
    budget) and the model is small enough. Returns it by layer, and a note when measuring failed."""
    model, backend, work = evaluate.model, evaluate.backend, evaluate.work
    cache_file = sensitivity_cache_path(model, plan, backend.format, feeds)
    # Measuring only orders the layers to keep in float; when every layer quantized already
    # meets the budget none is kept, and one build per layer would be wasted (all-MiniLM-L6-v2:
    # 42 builds, ~5 minutes). The simulated ranking is then reported, and cached apart so that
    # a later run that needs the measured one does not take it for final.
    measurable = len(plan.layers) <= MEASURED_SENSITIVITY_MAX_LAYERS and backend.measure_sensitivity
    measure = measurable and not base_feasible
    simulated_file = cache_file.with_name(f"{cache_file.stem}-simulated.json")
    cache_notes: list[str] = []  # a cached entry that failed its check, removed
    sensitivity = load_cached_sensitivity(cache_file, cache_notes)
    if sensitivity is None and measurable and not measure:
        sensitivity = load_cached_sensitivity(simulated_file, cache_notes)
    sensitivity_note = "; ".join(cache_notes)
    if sensitivity is not None:
        return sensitivity, sensitivity_note
    with progress.step(f"per-layer sensitivity ({scheme})"):
        analysed = model
        if plan.details.get("smoothing"):
            analysed, _ = smooth(model, feeds, plan.details["smoothing"]["alpha"])
        sensitivity = layer_sensitivity(analysed, plan, feeds, scheme)
    if measure:
        # A TFLite build runs onnx2tf and the TF converter (seconds to a minute); one per
        # layer is too slow, so ONNX Runtime's int8 measures the layers as a proxy.
        measuring = proxy_onnx_backend() if backend.proxy_sensitivity else backend
        where = "" if measuring is backend else ", on ONNX Runtime as a proxy"
        try:
            with progress.step(f"measured sensitivity ({len(plan.layers)} layers, one at a time{where})"):
                measured = measured_sensitivity(
                    evaluate.baseline,
                    plan,
                    measuring,
                    work,
                    evaluate.calibration,
                    evaluate.batch,
                    feeds,
                    evaluate.reference_runner,
                )
        except ConversionError as exc:
            # Measuring only orders the layers: when its builds fail (the ONNX proxy on an
            # opset-12 model: per-channel Q/DQ needs opset 13) the simulated order stands.
            measured, measure = {}, False
            failed = f"layer order from simulated sensitivity: measuring it failed ({exc.message})"
            sensitivity_note = "; ".join(filter(None, [sensitivity_note, failed]))
        for name, loss in measured.items():
            if name in sensitivity:
                # The runtime's own error with only this layer quantized replaces the simulation.
                sensitivity[name].sqnr_db = float("inf") if loss <= 0 else -10 * math.log10(loss)
    store_cached_sensitivity(simulated_file if measurable and not measure else cache_file, sensitivity)
    return sensitivity, sensitivity_note


def _searched(
    plan: PrecisionPlan,
    scheme: str,
    sensitivity: dict[str, Any],
    base_points: dict[str, dict[str, Any]],
    evaluate: CandidateEvaluator,
    profile: DeviceProfile,
    budget: float,
    search_budget: SearchBudget,
    progress: Progress,
    max_size: int | None = None,
) -> AutoResult:
    """Run the mixed-precision search from ``plan`` (the start ``scheme``'s best variant) and
    return its choice as an AutoResult (the float model when :func:`_with_float_fallback` says so)."""
    model, float_precision = evaluate.model, evaluate.float_precision
    by_size = sized.size_binds(artifact_bytes(evaluate.baseline), max_size)  # bytes decide, not time
    cost = sized.size_cost_function(model, plan, sensitivity) if by_size else cost_function(profile, model, plan)
    with progress.step("mixed-precision search") as _:
        result = search(
            plan,
            sensitivity,
            evaluate,
            budget,
            cost,
            float_precision,
            max_evaluations=search_budget.evaluations + 1,  # + the all-quantized start
            max_seconds=search_budget.seconds,
            companions=depthwise_companions(model, plan),
            max_size=max_size,
            boundary_macs=0 if by_size else boundary_macs(model),  # Q/DQ around float islands: time, not bytes
        )
    best_plan = copy.deepcopy(plan)
    for name in result.best.kept_float:
        best_plan.layers[name].precision = float_precision
    base_name = variant_name(scheme, {k: plan.details[k] for k in VARIANT_KEYS if k in plan.details})
    auto = AutoResult(
        best_plan,
        result.best.artifact,
        result,
        base_name,
        base_points,
        {k: v.as_dict() for k, v in sensitivity.items()},
        list(result.best.metrics.get("notes", [])),
        max_size=max_size,
    )
    return _with_float_fallback(auto, result, model, profile, float_precision, evaluate, budget, progress)


def auto_quantize(
    baseline: Path,
    model: onnx.ModelProto,
    profile: DeviceProfile,
    *,
    backend: Any,
    eval_data: Dataset,
    calibration: Dataset | None,
    batch: int,
    dynamic: bool,
    latency_batch: int,
    threads: int,
    budget: float,
    search_budget: SearchBudget,
    work: Path,
    progress: Progress,
    gate: Gate,
    max_size: int | None = None,
    max_size_source: str | None = None,
) -> AutoResult:
    """Search the cheapest mixed-precision plan within ``budget`` (gate points, measured as
    ``gate`` says) and, when given, ``max_size`` (artifact bytes, from ``max_size_source``);
    return it, its artifact and every point tried.

    The float model is always one of the points: when no quantized plan meets the budget, or the
    best that does is not measurably faster than fp32 in the same runtime, the float model is
    returned (``AutoResult.fallback`` says why and which quantized point came nearest).
    """
    evaluate = CandidateEvaluator(
        baseline,
        model,
        profile,
        backend=backend,
        eval_data=eval_data,
        calibration=calibration,
        batch=batch,
        dynamic=dynamic,
        latency_batch=latency_batch,
        threads=threads,
        work=work,
        progress=progress,
        gate=gate,
    )
    sensitivity_feeds = _sensitivity_feeds(calibration, eval_data)
    schemes, base_points, best_base = _search_starts(
        model, profile, backend, evaluate, calibration, budget, progress, max_size
    )
    if best_base is None:
        auto = _every_start_failed(model, profile, schemes, base_points, evaluate, budget, progress)
        auto.max_size, auto.max_size_source = max_size, max_size_source
        return auto
    scheme, plan, base_point = best_base
    # A start over the size budget ends the search at once: no layer order is needed, none measured.
    no_search = base_point.feasible or not sized.fits(base_point.size_bytes, max_size)
    sensitivity, sensitivity_note = _plan_sensitivity(plan, scheme, no_search, evaluate, sensitivity_feeds, progress)
    auto = _searched(
        plan, scheme, sensitivity, base_points, evaluate, profile, budget, search_budget, progress, max_size
    )
    auto.max_size_source = max_size_source
    if sensitivity_note and auto.artifact is not None:
        auto.artifact.notes.append(sensitivity_note)  # the report's notes come from the artifact
    return auto


def _with_float_fallback(
    auto: AutoResult,
    result: SearchResult,
    model: onnx.ModelProto,
    profile: DeviceProfile,
    float_precision: str,
    evaluate: Callable[[PrecisionPlan], SearchPoint],
    budget: float,
    progress: Progress,
) -> AutoResult:
    """Replace the search's choice by the float model when :func:`float_fallback` says so (the
    float point joins the search's points); return ``auto``."""
    fallback = float_fallback(result)
    if fallback is None:
        return auto
    if result.max_size is not None and not any(sized.fits(p.size_bytes, result.max_size) for p in result.points):
        return auto  # nothing quantized fits the size budget: the float model, bigger still, cannot
    with progress.step("float model (the search's floor)"):
        float_plan = uniform_plan(model, "none" if float_precision == "fp32" else float_precision, profile)
        float_point = evaluate(float_plan)
    float_point.kept_float = list(float_plan.layers)
    float_point.feasible = float_point.drop <= budget + 1e-9 and sized.fits(float_point.size_bytes, result.max_size)
    float_point.metrics["float_model"] = True
    result.points.append(float_point)
    if not sized.fits(float_point.size_bytes, result.max_size):
        # The float model is over the size budget: the quantized plan stays, with why in its notes.
        auto.notes.append(f"the float model ({float_point.size_bytes} bytes) is over the size budget: not returned")
        return auto
    result.best = float_point
    auto.plan, auto.artifact, auto.notes = float_plan, float_point.artifact, list(float_point.metrics["notes"])
    auto.fallback, auto.fallback_why = fallback
    return auto


def search_report(auto: AutoResult) -> dict[str, Any]:
    """The report's "search" section: base schemes tried, order, every point, verdict."""
    result = auto.search
    return {
        "base_scheme": auto.base_scheme,
        "base_points": auto.base_points,
        "budget_points": result.budget,
        "met_budget": result.met_budget,
        "stopped_by": result.stopped_by,
        "promotion_order": result.order,
        "blocking_layers": [] if result.met_budget else result.blocking_layers(),
        "points": [p.as_dict() for p in result.points],
        "chosen": result.best.as_dict(),
        "float_fallback": auto.fallback,
        "float_fallback_why": auto.fallback_why or None,
        "size_budget": sized.size_section(result.best, result.points, auto.max_size, auto.max_size_source),
        "sensitivity": auto.sensitivity,
    }


__all__ = ["auto_quantize", "parse_search_budget", "search_report", "DEFAULT_BUDGET"]
