"""The prune stage's report section: per stage (original, pruned, pruned + quantized)
parameters, MACs, size, latency and accuracy, the budget split, and one sentence on what the
cut bought; :class:`PruneResult` carries it to the pipeline, which adds the final stage."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import onnx

from edgeport.core.bundle import path_bytes
from edgeport.core.model import CanonicalModel
from edgeport.options.prune_spec import PruneSpec
from edgeport.prune.context import PruneContext
from edgeport.prune.coreml import coreml_sparse_storage
from edgeport.prune.measure import gzip_size, onnx_stats
from edgeport.verify.metrics import accuracy_drop


@dataclasses.dataclass
class PruneResult:
    """The pruned model for quantization/export, its fp32 file, its accuracy drop against the
    original (gate metric, points) and the report section (completed by :meth:`finish`)."""

    canonical: CanonicalModel
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


def stage_row(
    label: str, model: onnx.ModelProto, ctx: PruneContext, latency_ms: float, speedup: float, **extra: Any
) -> dict[str, Any]:
    """One row of the section's stages: ``model``'s parameters, MACs, bytes and gzip bytes, with
    its measured latency and speedup and ``extra`` figures (top-1, drop)."""
    data = model.SerializeToString()
    stats = onnx_stats(model, ctx.canonical.inputs)
    return {
        "stage": label,
        **stats,
        "bytes": len(data),
        "gzip_bytes": gzip_size(data),
        "latency_ms": latency_ms,
        "speedup": speedup,
        "latency_runtime": f"ONNX Runtime CPU, {ctx.options.threads} thread(s), interleaved medians",
        **extra,
    }


def pruning_section(
    ctx: PruneContext,
    spec: PruneSpec,
    details: dict[str, Any],
    original: dict[str, Any],
    after: dict[str, Any],
    metric: str,
) -> dict[str, Any]:
    """The report's "pruning" section (before the final stage is added): method, request,
    budget split, calibration, the path's ``details``, the two stage rows and what it buys."""
    return {
        "method": spec.method,
        "requested": spec.as_dict(),
        "budget": {
            "max_accuracy_drop": ctx.total_budget,
            "quantization_reserve": ctx.reserve if ctx.total_budget is not None else None,
            "reserve_how": ctx.reserve_how if ctx.total_budget is not None else None,
            "pruning_budget": ctx.budget,
            "metric": metric,
        },
        "finetune_steps": ctx.options.finetune_steps,
        "calibration": ctx.calibration.describe(),
        **details,
        "stages": [original, after],
        "what_it_buys": what_it_buys(spec, original, after),
    }


def pruning_decision(ctx: PruneContext, spec: PruneSpec, buys: str) -> dict[str, str]:
    """The decision the report lists for ``--prune``: what was asked, what it bought, and why
    the per-layer ratios are what they are."""
    options = ctx.options
    return {
        "asked": f"--prune {spec.text}"
        + (f" --finetune_steps {options.finetune_steps}" if options.finetune_steps else ""),
        "done": buys,
        "why": "per-layer ratios from measured sensitivity (the layers that move the outputs most are cut least)"
        + (
            f", within {ctx.budget:.3g} of the {ctx.total_budget:.3g} points budget ({ctx.reserve:.2g} left "
            "for quantization)"
            if ctx.budget is not None
            else ""
        ),
    }


def what_it_buys(spec: PruneSpec, original: dict[str, Any], after: dict[str, Any]) -> str:
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
