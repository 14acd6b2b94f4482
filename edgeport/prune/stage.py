"""The prune stage of the pipeline (``--prune``), between normalize and quantize.

It returns the pruned model as a ModelBundle (for structured pruning: a fresh export of the
pruned nn.Module, parity-checked against it) for quantization and export, and leaves the
original alone: the fp32 baseline that fidelity, latency and parity refer to stays the
unpruned model, so the report's accuracy drop is the drop of the final artifact against the
original, end to end. The report section lists per layer what was cut and, per stage
(original, pruned, pruned + quantized), parameters, MACs, size, latency and accuracy.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.bundle import path_bytes
from edgeport.core.errors import InputError
from edgeport.core.model_bundle import ModelBundle, SourceModel
from edgeport.core.progress import Progress
from edgeport.core.registry import backend_class
from edgeport.data.dataset import Dataset
from edgeport.data.load import load_dataset
from edgeport.data.preprocess import parse_preprocess
from edgeport.options.prune_spec import MAX_RATIO, PruneSpec, parse_prune
from edgeport.options.recipe import Recipe
from edgeport.prune import budget as budget_mod
from edgeport.prune.budget import LayerCurve, allocate
from edgeport.prune.measure import gzip_size, onnx_stats, side_by_side_ms
from edgeport.prune.sensitivity import measure_curves, output_distortion, probe_ratios
from edgeport.runtime.ort import OrtRunner
from edgeport.verify.metrics import accuracy_drop, compare

PRUNED_NAME = "pruned_fp32.onnx"
# The gate measures pruning and quantization together against the original, so pruning may
# spend only what quantization leaves: the drop of the *unpruned* model quantized the same way
# (ONNX Runtime's quantizer as a quick proxy), plus this margin for noise and for the pruned
# model being a little more sensitive. Where that cannot be measured (auto search, a saved
# plan, a failing quantizer) pruning gets this share of the budget.
RESERVE_MARGIN = 0.1
FALLBACK_SHARE = 0.5
SENSITIVITY_SAMPLES = 128
DISTILL_SAMPLES = 4096  # calibration samples held in memory for recovery
# When the pruned model misses its part of the budget: retry with the target scaled down (see
# edgeport.prune.budget.next_factor), at most this many tries in all. A structured try may
# include recovery (minutes), so it gets few, large steps; a magnitude try is one evaluation.
ATTEMPTS = {"channels": (4, 0.3), "magnitude": (8, 0.6)}  # (tries, smallest step factor)
LATENCY_RUNS = 200
LATENCY_WARMUP = 20


@dataclasses.dataclass
class PruneResult:
    """The pruned model for quantization/export, its fp32 file, its accuracy drop against the
    original (gate metric, points) and the report section (completed by :meth:`finish`)."""

    bundle: ModelBundle
    path: Path
    drop: float
    metric: str
    section: dict[str, Any]

    def quantization_budget(self, budget: float) -> float:
        """What is left of the gate's ``budget`` (points) for quantization after pruning's drop."""
        return max(0.0, budget - max(0.0, self.drop))

    def finish(self, verified: dict[str, Any], artifact_path: Path, label: str, metric: str) -> dict[str, Any]:
        """Add the final stage (pruned + quantized artifact, as verified against the original) and
        return the section for report.json."""
        fidelity, latency = verified["fidelity"], verified["latency"]
        drop, _ = accuracy_drop(fidelity, metric)
        after = self.section["stages"][1]
        ran = latency.get("speedup") is not None and latency.get("artifact")
        self.section["stages"].append(
            {
                "stage": label,
                "params": after["params"],
                "nonzero_params": after["nonzero_params"],
                "macs": after["macs"],
                "bytes": path_bytes(artifact_path),
                "gzip_bytes": gzip_size(artifact_path),
                "latency_ms": latency["artifact"]["p50_ms"] if ran else None,
                "speedup": latency["speedup"] if ran else None,
                "latency_runtime": latency.get("measured") if ran else "not run on this host",
                "top1": fidelity.get("artifact_top1"),
                "drop": drop,
            }
        )
        if self.section["method"] == "magnitude" and artifact_path.suffix == ".mlpackage":
            self.section["coreml_sparse_storage"] = coreml_sparse_storage(artifact_path)
        return self.section


def coreml_sparse_storage(package: Path) -> dict[str, Any]:
    """Measure what coremltools' sparse weight storage (bit mask + non-zero values, decoded by
    Core ML at load time) makes of a magnitude-pruned package: it is written to a temporary copy,
    not applied to the artifact, whose fidelity was verified as it is. Returns the sizes."""
    import tempfile

    try:
        import coremltools as ct
        import coremltools.optimize.coreml as cto

        model = ct.models.MLModel(str(package), skip_model_load=True)
        # Threshold 1e-12: only the exact zeros pruning wrote; tensors under 30% zeros stay dense.
        op = cto.OpThresholdPrunerConfig(threshold=1e-12, minimum_sparsity_percentile=0.3, weight_threshold=256)
        sparse = cto.prune_weights(model, config=cto.OptimizationConfig(global_config=op))
        with tempfile.TemporaryDirectory(prefix="edgeport-sparse-") as name:
            target = Path(name) / "sparse.mlpackage"
            sparse.save(str(target))
            sparse_bytes, sparse_gzip = path_bytes(target), gzip_size(target)
    except Exception as exc:  # coremltools refuses some compressed packages; say so
        return {"measured": False, "why": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    dense = path_bytes(package)
    return {
        "measured": True,
        "applied": False,
        "dense_bytes": dense,
        "sparse_bytes": sparse_bytes,
        "sparse_gzip_bytes": sparse_gzip,
        "why": "measured on a copy with coremltools.optimize.coreml.prune_weights (threshold pruner on the zeros); "
        "not applied to the verified artifact; whether sparse weights also run faster depends on the Apple "
        "device and OS and cannot be measured here (Core ML predicts only on macOS)",
    }


def _calibration(recipe: Recipe, data: Any, source: SourceModel, decisions: list[dict[str, str]]) -> Dataset:
    """The samples pruning learns from: the calibration set (opened here when quantization did
    not need one), else the eval data or random inputs, with a decision saying so."""
    if data.calibration is not None:
        return data.calibration
    path = recipe.calibration_data
    if path is None:
        path = recipe.eval_data
        done = "used the eval data" if path else "used random inputs"
        decisions.append(
            {
                "asked": f"--prune {recipe.prune} without --calibration_data",
                "done": done,
                "why": "pruning ranks layers (and recovery trains) on calibration inputs; "
                + ("the accuracy then measured on the same samples may be optimistic" if path else "none were given"),
            }
        )
    return load_dataset(
        path,
        source.inputs,
        recipe.calibration_samples,
        parse_preprocess(recipe.preprocess),
        recipe.seed,
        64,
        data.static_batch,
        text_encoder=source.tokenize,
    )


def _arrays(dataset: Dataset, count: int, batch: int, dynamic: bool) -> dict[str, np.ndarray]:
    """The first ``count`` samples as one array per input (whole batches of ``batch`` only
    when the model's batch is fixed: the rest cannot be fed)."""
    count = min(count, len(dataset))
    if not dynamic:
        count = max(batch, count - count % batch)
    parts = [dataset.batch(i, min(i + batch, count)) for i in range(0, count, batch)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _run_arrays(run, arrays: dict[str, np.ndarray], batch: int) -> list[np.ndarray]:
    """Run ``run(feeds) -> outputs`` over ``arrays`` in chunks of ``batch``; concatenate."""
    count = len(next(iter(arrays.values())))
    chunks = [run({k: v[i : i + batch] for k, v in arrays.items()}) for i in range(0, count, batch)]
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


class _Context:
    """What both pruning methods need: data, reference outputs, budget and where to report."""

    def __init__(self, recipe, bundle, reference_feeds, data, profile, scheme, decisions, progress, gate) -> None:
        self.recipe: Recipe = recipe
        self.gate = gate  # edgeport.verify.gate.Gate: what the accuracy figures measure
        self.bundle: ModelBundle = bundle
        self.reference_feeds = reference_feeds
        self.data = data
        self.decisions = decisions
        self.progress: Progress = progress
        self.names = [s.name for s in bundle.inputs]
        self.output_names = [o.name for o in bundle.outputs]
        self.run_batch = data.batch  # the batch the ONNX model takes (static models: their own)
        calibration = _calibration(recipe, data, bundle.source, decisions)
        self.calibration = calibration
        self.sensitivity_inputs = _arrays(calibration, SENSITIVITY_SAMPLES, data.static_batch, data.dynamic)
        self.eval_inputs = _arrays(data.eval_data, len(data.eval_data), self.run_batch, data.dynamic)
        labels = data.eval_data.labels
        count = len(next(iter(self.eval_inputs.values())))
        self.labels = labels[:count] if labels is not None else None
        from edgeport.verify.gate import DEFAULT_BUDGET

        self.total_budget = recipe.max_accuracy_drop
        if self.total_budget is None and scheme == "auto":
            self.total_budget = DEFAULT_BUDGET
        with progress.step("pruning: fp32 reference outputs"):
            baseline = OrtRunner(bundle.onnx_model.SerializeToString(), recipe.threads)
            self.reference_eval = _run_arrays(baseline.run, self.eval_inputs, self.run_batch)
            self.reference_sensitivity = _run_arrays(baseline.run, self.sensitivity_inputs, data.static_batch)
        self.reserve, self.reserve_how = 0.0, "no quantization follows"
        if self.total_budget is not None and scheme != "none":
            with progress.step(f"pruning: what {scheme} costs the unpruned model (budget reserve)"):
                self.reserve, self.reserve_how = self._quantization_reserve(profile, scheme)
        self.budget = None if self.total_budget is None else max(0.0, self.total_budget - self.reserve)

    def _quantization_reserve(self, profile, scheme: str) -> tuple[float, str]:
        """Points of the budget to leave for quantization, and how they were found."""
        import tempfile

        from edgeport.core.plan import uniform_plan

        fallback = (1 - FALLBACK_SHARE) * self.total_budget
        if scheme == "auto" or self.recipe.precision_plan:
            return fallback, f"{1 - FALLBACK_SHARE:.0%} of the budget left for the precision search"
        try:
            with tempfile.TemporaryDirectory(prefix="edgeport-reserve-") as name:
                work = Path(name)
                onnx.save(self.bundle.onnx_model, str(work / "fp32.onnx"))
                plan = uniform_plan(self.bundle.onnx_model, scheme, profile)
                backend_class("onnx")(profile).build(
                    work / "fp32.onnx", plan, work / "q.onnx", work, self.data.calibration, self.data.batch
                )
                runner = OrtRunner(work / "q.onnx", self.recipe.threads)
                drop, _, _ = self.drop(_run_arrays(runner.run, self.eval_inputs, self.run_batch))
        except Exception as exc:  # any quantizer failure (EdgeportError included): a fixed share
            return fallback, f"{1 - FALLBACK_SHARE:.0%} of the budget ({type(exc).__name__} measuring {scheme})"
        return (
            min(self.total_budget, max(0.0, drop) + RESERVE_MARGIN),
            f"the unpruned model quantized {scheme} (ONNX Runtime) lost {drop:.2f} points; + {RESERVE_MARGIN} margin",
        )

    def drop(self, outputs: list[np.ndarray]) -> tuple[float, str, dict[str, Any]]:
        """Accuracy drop (gate metric, points) of ``outputs`` on the eval data against the original."""
        fidelity = compare(self.reference_eval, outputs, self.output_names, self.labels, self.gate)
        drop, metric = accuracy_drop(fidelity)
        return drop, metric, fidelity

    def fits(self, drop: float) -> bool:
        """Whether ``drop`` is within pruning's part of the budget (always, without a budget)."""
        return self.budget is None or drop <= self.budget + 1e-9


def _search(ctx: _Context, spec: PruneSpec, allocate_at, attempt) -> tuple[list[dict[str, Any]], Any]:
    """Try the requested cut, then smaller ones, until one fits pruning's part of the budget.

    ``allocate_at(factor)`` gives per-layer ratios for the target scaled by ``factor``;
    ``attempt(ratios)`` prunes (and recovers) and returns (record with "drop", payload).
    Returns every attempt's record and the payload of the one that fits (None if none did).
    """
    attempts: list[dict[str, Any]] = []
    tried: list[dict[str, float]] = []
    factor = 1.0
    max_attempts, floor = ATTEMPTS[spec.method]
    while len(attempts) < max_attempts and factor > 0.02:
        ratios = allocate_at(factor)
        if not any(ratios.values()):
            break  # scaled down to nothing: the unpruned model is the answer
        if ratios in tried:  # the ladders are coarse: a slightly smaller target can give the same cut
            factor *= 0.85
            continue
        tried.append(ratios)
        record, payload = attempt(ratios)
        target = spec.ratio * factor if spec.ratio is not None else None
        attempts.append({"factor": round(factor, 4), "target": target, **record})
        if ctx.fits(record["drop"]):
            return attempts, payload
        factor = budget_mod.next_factor(factor, record["drop"], ctx.budget or 0.0, floor)
    return attempts, None


# ----------------------------------------------------------------------------- structured


def _torch_macs(model, example: tuple) -> float:
    """Multiply-accumulates of one forward pass of ``model`` (torch-pruning's counter)."""
    import torch_pruning as tp

    try:
        macs, _ = tp.utils.count_ops_and_params(model, list(example))
    except Exception:  # the counter is a convenience: without it every channel weighs the same
        return 0.0
    return float(macs)


def _prune_channels(ctx: _Context, spec: PruneSpec) -> tuple[ModelBundle, dict[str, Any]]:
    import torch

    from edgeport.frontends.normalize import normalize
    from edgeport.frontends.torch import make_torch_runner
    from edgeport.prune.distill import distill, torch_threads
    from edgeport.prune.structured import ROUND_TO, example_inputs, find_groups, pruned_copy, require_module

    source = ctx.bundle.source
    module = require_module(source)
    static = ctx.data.static_batch
    chunk = ctx.run_batch  # the batch the model takes (its own when fixed)

    def batches(arrays: dict[str, np.ndarray]) -> list[tuple]:
        count = len(arrays[ctx.names[0]])
        return [tuple(torch.from_numpy(arrays[n][i : i + chunk]) for n in ctx.names) for i in range(0, count, chunk)]

    example = example_inputs(source, {k: v[:static] for k, v in ctx.sensitivity_inputs.items()}, static)
    sens_batches = batches(ctx.sensitivity_inputs)
    with progress_step(ctx, "pruning: channel groups (torch-pruning DepGraph)"), torch_threads(ctx.recipe.threads):
        groups = find_groups(module, example)
    if not groups:
        raise InputError(
            "--prune channels found no channel group that can be removed without changing the model's outputs",
            hint="use --prune magnitude:R",
        )
    ladders = {g.name: g.ladder(ROUND_TO, MAX_RATIO["channels"]) for g in groups}
    curves = [LayerCurve(g.name, g.channels, [(g.channels - k) / g.channels for k in ladders[g.name]]) for g in groups]
    by_name = {c.name: c for c in curves}

    def snap(name: str, ratio: float) -> float:
        return min(by_name[name].options, key=lambda o: abs(o - ratio)) if name in by_name else ratio

    def removal(ratios: dict[str, float]) -> dict[str, int]:
        return {g.name: int(round(ratios.get(g.name, 0.0) * g.channels)) for g in groups}

    torch_run = lambda model: make_torch_runner(model, ctx.names)  # noqa: E731

    macs_full = _torch_macs(module, example)

    def distortion_at(name: str, ratio: float) -> float:
        pruned, _ = pruned_copy(module, removal({name: ratio}), example, sens_batches)
        curve = by_name[name]
        if curve.gain == 1.0 and macs_full:  # MACs saved per channel removed, from the first probe
            curve.gain = max(macs_full - _torch_macs(pruned, example), 1.0) / max(removal({name: ratio})[name], 1)
        outputs = _run_arrays(torch_run(pruned), ctx.sensitivity_inputs, chunk)
        return output_distortion(ctx.reference_sensitivity, outputs)

    fixed_names = {g.name for g in groups if spec.fixed_ratio(g.name) is not None}
    fixed = {n: snap(n, spec.fixed_ratio(n)) for n in fixed_names}
    probe_total = sum(len(probe_ratios(c.options)) for c in curves if c.name not in fixed_names)
    with progress_step(ctx, "pruning: sensitivity per channel group", probe_total) as advance:
        with torch_threads(ctx.recipe.threads):
            measure_curves([c for c in curves if c.name not in fixed_names], distortion_at, advance)

    distill_inputs = _arrays(ctx.calibration, DISTILL_SAMPLES, static, ctx.data.dynamic)
    recal_batches = batches(distill_inputs)

    def allocate_at(factor: float) -> dict[str, float]:
        target = spec.ratio * factor if spec.ratio is not None else None
        return allocate(curves, target, {k: snap(k, v * factor) for k, v in fixed.items()})

    def attempt(ratios: dict[str, float]) -> tuple[dict[str, Any], Any]:
        with progress_step(ctx, f"pruning: {budget_mod.achieved(curves, ratios):.0%} of channels"):
            with torch_threads(ctx.recipe.threads):
                pruned, counts = pruned_copy(module, removal(ratios), example, recal_batches)
                one_shot, _, _ = ctx.drop(_run_arrays(torch_run(pruned), ctx.eval_inputs, ctx.run_batch))
        recovery = None
        if ctx.recipe.finetune_steps:
            with progress_step(ctx, f"pruning: recovery ({ctx.recipe.finetune_steps} distillation steps)"):
                recovery = distill(
                    pruned,
                    module,
                    distill_inputs,
                    ctx.names,
                    ctx.recipe.finetune_steps,
                    seed=ctx.recipe.seed,
                    threads=ctx.recipe.threads,
                    fixed_batch=None if ctx.data.dynamic else static,
                )
        with torch_threads(ctx.recipe.threads):
            drop, _, fidelity = ctx.drop(_run_arrays(torch_run(pruned), ctx.eval_inputs, ctx.run_batch))
        record = {
            "channels_removed": budget_mod.achieved(curves, ratios),
            "channels_kept": {name: after for name, (_, after) in counts.items()},
            "one_shot_drop": one_shot,
            "drop": drop,
            "top1": fidelity.get("artifact_top1"),
            "fits_budget": ctx.fits(drop),
            "recovery": recovery,
        }
        return record, (pruned, counts, ratios)

    attempts, chosen = _search(ctx, spec, allocate_at, attempt)
    if chosen is None:
        ctx.decisions.append(
            {
                "asked": f"--prune {spec.text} within {ctx.budget:.3g} points",
                "done": "not pruned",
                "why": f"the smallest cut tried ({attempts[-1]['channels_removed']:.0%} of channels) cost "
                f"{attempts[-1]['drop']:.2f} points, over pruning's part of the budget",
            }
        )
        pruned, counts, ratios = copy.deepcopy(module).eval(), {g.name: (g.channels, g.channels) for g in groups}, {}
    else:
        pruned, counts, ratios = chosen
    pruned_source = dataclasses.replace(source, run=torch_run(pruned), live_model=pruned, notes=[])
    with progress_step(ctx, "pruning: export the pruned model to ONNX and check parity"):
        pruned_bundle, _ = normalize(pruned_source, None, ctx.reference_feeds, ctx.recipe)
    group_rows = [
        {
            "layer": g.name,
            "coupled": g.coupled,
            "dependents": g.dependents,
            "channels_before": counts[g.name][0],
            "channels_after": counts[g.name][1],
            "ratio": ratios.get(g.name, 0.0),
            "fixed": g.name in fixed_names,
            "sensitivity": {f"{r:.3f}": v for r, v in by_name[g.name].measured.items()},
        }
        for g in groups
    ]
    details = {"layers": group_rows, "attempts": attempts, "accepted": chosen is not None}
    # The report's model.parity is the original's export; this one proves the pruned export.
    details["export_parity"] = pruned_bundle.parity
    return pruned_bundle, details


# ----------------------------------------------------------------------------- unstructured


def _prune_magnitude(ctx: _Context, spec: PruneSpec) -> tuple[ModelBundle, dict[str, Any]]:
    from edgeport.prune.magnitude import LADDER, WeightEditor, prunable_weights

    layers = prunable_weights(ctx.bundle.onnx_model)
    if not layers:
        raise InputError("--prune magnitude found no Conv/MatMul/Gemm float weights to prune in this model")
    if ctx.recipe.finetune_steps:
        ctx.decisions.append(
            {
                "asked": f"--finetune_steps {ctx.recipe.finetune_steps} with --prune {spec.text}",
                "done": "one-shot (no recovery)",
                "why": "magnitude pruning edits the ONNX weights, which edgeport cannot train; recovery applies to "
                "--prune channels on PyTorch models",
            }
        )
    top = MAX_RATIO["magnitude"]
    ladder = [r for r in LADDER if r <= top]
    curves = [LayerCurve(layer.name, layer.size, list(ladder)) for layer in layers]
    by_name = {c.name: c for c in curves}
    editor = WeightEditor(ctx.bundle.onnx_model, layers)
    static = ctx.data.static_batch

    def snap(name: str, ratio: float) -> float:
        return ratio  # any ratio is exact for weights

    def run(ratios: dict[str, float], arrays: dict[str, np.ndarray], batch: int) -> list[np.ndarray]:
        editor.apply(ratios)
        return _run_arrays(OrtRunner(editor.serialized(), ctx.recipe.threads).run, arrays, batch)

    def distortion_at(name: str, ratio: float) -> float:
        return output_distortion(ctx.reference_sensitivity, run({name: ratio}, ctx.sensitivity_inputs, static))

    fixed_names = {c.name for c in curves if spec.fixed_ratio(c.name) is not None}
    fixed = {n: spec.fixed_ratio(n) for n in fixed_names}
    free = [c for c in curves if c.name not in fixed_names]
    probe_total = sum(len(probe_ratios(c.options)) for c in free)
    with progress_step(ctx, "pruning: sensitivity per weight tensor", probe_total) as advance:
        measure_curves(free, distortion_at, advance)

    def allocate_at(factor: float) -> dict[str, float]:
        target = spec.ratio * factor if spec.ratio is not None else None
        return allocate(curves, target, {k: v * factor for k, v in fixed.items()})

    def attempt(ratios: dict[str, float]) -> tuple[dict[str, Any], Any]:
        with progress_step(ctx, f"pruning: {budget_mod.achieved(curves, ratios):.0%} of weights"):
            drop, _, fidelity = ctx.drop(run(ratios, ctx.eval_inputs, ctx.run_batch))
        record = {
            "sparsity": budget_mod.achieved(curves, ratios),
            "ratios": {name: ratio for name, ratio in ratios.items() if ratio},
            "drop": drop,
            "top1": fidelity.get("artifact_top1"),
            "fits_budget": ctx.fits(drop),
        }
        return record, ratios

    attempts, chosen = _search(ctx, spec, allocate_at, attempt)
    if chosen is None:
        ctx.decisions.append(
            {
                "asked": f"--prune {spec.text} within {ctx.budget:.3g} points",
                "done": "not pruned",
                "why": f"the smallest cut tried ({attempts[-1]['sparsity']:.0%} of weights) cost "
                f"{attempts[-1]['drop']:.2f} points, over pruning's part of the budget",
            }
        )
    achieved = editor.apply(chosen or {})
    pruned_model = editor.snapshot()
    source, note = _masked_source(ctx, pruned_model, layers)
    pruned_bundle = dataclasses.replace(ctx.bundle, onnx_model=pruned_model, source=source)
    rows = [
        {
            "layer": layer.name,
            "op": layer.op,
            "weights": layer.size,
            "ratio": (chosen or {}).get(layer.name, 0.0),
            "sparsity": achieved.get(layer.name, 0.0),
            "fixed": layer.name in fixed_names,
            "sensitivity": {f"{r:.3f}": v for r, v in by_name[layer.name].measured.items()},
        }
        for layer in layers
    ]
    section = {"layers": rows, "attempts": attempts, "accepted": chosen is not None}
    if note:
        section["coreml"] = note
    return pruned_bundle, section


def _masked_source(ctx: _Context, model: onnx.ModelProto, layers) -> tuple[SourceModel, str | None]:
    """Core ML converts from the PyTorch source, not the ONNX model: zero the same weights in a
    copy of the source module (matched by parameter name and shape). Other formats: unchanged."""
    source = ctx.bundle.source
    if ctx.recipe.output_format != "coreml" or source.framework != "pytorch" or source.live_model is None:
        return source, None
    import torch

    from edgeport.frontends.torch import make_torch_runner
    from edgeport.prune.magnitude import masks_by_initializer

    masks = masks_by_initializer(model, layers)
    live = copy.deepcopy(source.live_model)
    exported = isinstance(live, torch.export.ExportedProgram)
    tensors = dict(live.state_dict) if exported else dict(live.state_dict())
    matched = 0
    with torch.no_grad():
        for name, mask in masks.items():
            tensor = tensors.get(name)
            if tensor is None:
                continue
            keep = torch.from_numpy(mask)
            if tuple(tensor.shape) != tuple(keep.shape) and tuple(tensor.shape) == tuple(keep.T.shape):
                keep = keep.T
            if tuple(tensor.shape) == tuple(keep.shape):
                tensor.mul_(keep.to(tensor.dtype))
                matched += 1
    module = live.module() if exported else live
    runner = make_torch_runner(module, [s.name for s in source.inputs])
    note = (
        f"Core ML converts from the PyTorch source: the same weights were zeroed there ({matched} of {len(masks)} "
        "tensors matched by name)"
    )
    return dataclasses.replace(source, live_model=live, run=runner, notes=[]), note


# ----------------------------------------------------------------------------- the stage


class progress_step:  # noqa: N801  (used like a function)
    """``ctx.progress.step`` with an optional total; yields the advance callback."""

    def __init__(self, ctx: _Context, label: str, total: int | None = None) -> None:
        self._manager = ctx.progress.step(label, total=total) if total else ctx.progress.step(label)

    def __enter__(self):
        return self._manager.__enter__()

    def __exit__(self, *exc):
        return self._manager.__exit__(*exc)


def _stage_row(label: str, model: onnx.ModelProto, ctx: _Context, latency_ms: float, speedup: float, **extra) -> dict:
    data = model.SerializeToString()
    stats = onnx_stats(model, ctx.bundle.inputs)
    return {
        "stage": label,
        **stats,
        "bytes": len(data),
        "gzip_bytes": gzip_size(data),
        "latency_ms": latency_ms,
        "speedup": speedup,
        "latency_runtime": f"ONNX Runtime CPU, {ctx.recipe.threads} thread(s), interleaved medians",
        **extra,
    }


def prune_stage(
    recipe: Recipe,
    bundle: ModelBundle,
    reference_feeds: dict[str, np.ndarray],
    data: Any,
    profile: Any,
    scheme: str,
    decisions: list[dict[str, str]],
    out_dir: Path,
    progress: Progress,
    gate: Any = None,
) -> PruneResult:
    """Prune ``bundle``'s model as ``--prune`` says, within the part of the accuracy budget that
    quantization to ``scheme`` leaves (measured on the unpruned model, see RESERVE_MARGIN).

    ``data`` is the pipeline's DataPlan (eval data, calibration, batch); ``profile`` the device
    profile (for the quantization estimate). Returns the
    :class:`PruneResult`: the pruned ModelBundle and its fp32 ONNX file (``out_dir``/pruned_fp32.onnx,
    kept in the bundle: the input of quantization, and a deployable fp32 model), the drop
    against the original, and the report section. Raises InputError when the method does not
    fit the source (channels on a non-PyTorch or flattened model) and ConversionError when the
    pruned model cannot be exported.
    """
    from edgeport.core.plan import ensure_node_names

    spec = parse_prune(recipe.prune)
    ctx = _Context(recipe, bundle, reference_feeds, data, profile, scheme, decisions, progress, gate)
    if spec.method == "channels":
        pruned, details = _prune_channels(ctx, spec)
    else:
        pruned, details = _prune_magnitude(ctx, spec)
    ensure_node_names(pruned.onnx_model)
    path = out_dir / PRUNED_NAME
    onnx.save(pruned.onnx_model, str(path))

    with progress_step(ctx, "pruning: accuracy and latency of the pruned fp32 model"):
        outputs = _run_arrays(OrtRunner(path, recipe.threads).run, ctx.eval_inputs, ctx.run_batch)
        drop, metric, fidelity = ctx.drop(outputs)
        feeds = {k: v[: data.static_batch] for k, v in ctx.eval_inputs.items()}
        runs = min(recipe.latency_runs, LATENCY_RUNS)
        timing = side_by_side_ms(
            {"original": bundle.onnx_model.SerializeToString(), "pruned": path},
            feeds,
            recipe.threads,
            runs,
            LATENCY_WARMUP,
        )
    speedup = timing["original"] / timing["pruned"]
    original = _stage_row(
        "original (fp32)",
        bundle.onnx_model,
        ctx,
        timing["original"],
        1.0,
        top1=fidelity.get("reference_top1"),
        drop=0.0,
    )
    after = _stage_row(
        "pruned (fp32)",
        pruned.onnx_model,
        ctx,
        timing["pruned"],
        speedup,
        top1=fidelity.get("artifact_top1"),
        drop=drop,
    )
    buys = _what_it_buys(spec, original, after)
    section = {
        "method": spec.method,
        "requested": spec.as_dict(),
        "budget": {
            "max_accuracy_drop": ctx.total_budget,
            "quantization_reserve": ctx.reserve if ctx.total_budget is not None else None,
            "reserve_how": ctx.reserve_how if ctx.total_budget is not None else None,
            "pruning_budget": ctx.budget,
            "metric": metric,
        },
        "finetune_steps": recipe.finetune_steps,
        "calibration": ctx.calibration.describe(),
        **details,
        "stages": [original, after],
        "what_it_buys": buys,
    }
    decisions.append(
        {
            "asked": f"--prune {spec.text}"
            + (f" --finetune_steps {recipe.finetune_steps}" if recipe.finetune_steps else ""),
            "done": buys,
            "why": "per-layer ratios from measured sensitivity (the layers that move the outputs most are cut least)"
            + (
                f", within {ctx.budget:.3g} of the {ctx.total_budget:.3g} points budget ({ctx.reserve:.2g} left "
                "for quantization)"
                if ctx.budget is not None
                else ""
            ),
        }
    )
    return PruneResult(pruned, path, drop, metric, section)


def _what_it_buys(spec: PruneSpec, original: dict, after: dict) -> str:
    """One honest sentence: what the cut removed and what it gained, measured."""
    speed = after["speedup"]
    if spec.method == "magnitude":
        zeros = 1 - after["nonzero_params"] / max(after["params"], 1)
        return (
            f"{zeros:.0%} of the weights are zero; gzip size {original['gzip_bytes']:,} -> "
            f"{after['gzip_bytes']:,} bytes "
            f"({original['gzip_bytes'] / max(after['gzip_bytes'], 1):.2f}x smaller); no speed: dense CPU kernels "
            f"(ONNX Runtime, LiteRT) multiply the zeros too (ONNX Runtime measured {speed:.2f}x); the file stays "
            f"{after['bytes']:,} bytes"
        )
    macs = None
    if original["macs"] and after["macs"] is not None:
        macs = 1 - after["macs"] / original["macs"]
    return (
        f"{1 - after['params'] / max(original['params'], 1):.0%} fewer parameters"
        + (f", {macs:.0%} fewer MACs" if macs is not None else "")
        + f"; fp32 ONNX {speed:.2f}x faster (measured side by side); the smaller model is what every "
        "output format is built from"
    )
