"""The magnitude path of the prune stage (``--prune magnitude``): zero the smallest weights of
the ONNX model's Conv/MatMul/Gemm tensors (any source), per tensor as far as its measured
sensitivity allows, within pruning's part of the accuracy budget."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.model import CanonicalModel
from edgeport.options.prune_spec import MAX_RATIO, PruneSpec
from edgeport.prune import budget as budget_mod
from edgeport.prune.budget import LayerCurve, allocate
from edgeport.prune.context import PruneContext, progress_step, run_arrays
from edgeport.prune.coreml import masked_source
from edgeport.prune.magnitude import LADDER, WeightEditor, prunable_weights
from edgeport.prune.search import search_cut
from edgeport.prune.sensitivity import measure_curves, output_distortion, probe_ratios
from edgeport.runtime.ort import OrtRunner


def prune_by_magnitude(ctx: PruneContext, spec: PruneSpec) -> tuple[CanonicalModel, dict[str, Any]]:
    """Measure each weight tensor's sensitivity, then search per-tensor ratios for ``spec``'s
    target that fit pruning's part of the budget. Returns the pruned CanonicalModel (the unpruned
    model, with a decision, when no cut fits) and its report details (per layer, attempts).
    Raises InputError when the model has no prunable weights."""
    layers = prunable_weights(ctx.canonical.onnx_model)
    if not layers:
        raise InputError("--prune magnitude found no Conv/MatMul/Gemm float weights to prune in this model")
    if ctx.options.finetune_steps:
        ctx.decisions.append(
            {
                "asked": f"--finetune_steps {ctx.options.finetune_steps} with --prune {spec.text}",
                "done": "one-shot (no recovery)",
                "why": "magnitude pruning edits the ONNX weights, which edgeport cannot train; recovery applies to "
                "--prune channels on PyTorch models",
            }
        )
    top = MAX_RATIO["magnitude"]
    ladder = [r for r in LADDER if r <= top]
    curves = [LayerCurve(layer.name, layer.size, list(ladder)) for layer in layers]
    by_name = {c.name: c for c in curves}
    editor = WeightEditor(ctx.canonical.onnx_model, layers)
    static = ctx.data.static_batch

    def run(ratios: dict[str, float], arrays: dict[str, np.ndarray], batch: int) -> list[np.ndarray]:
        editor.apply(ratios)
        return run_arrays(OrtRunner(editor.serialized(), ctx.options.threads).run, arrays, batch)

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

    attempts, chosen = search_cut(ctx, spec, allocate_at, attempt)
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
    source, note = masked_source(ctx, pruned_model, layers)
    pruned_canonical = dataclasses.replace(ctx.canonical, onnx_model=pruned_model, source=source)
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
    return pruned_canonical, section
