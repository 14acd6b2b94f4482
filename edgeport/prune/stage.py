"""The prune stage of the pipeline (``--prune``), between normalize and quantize.

It returns the pruned model as a CanonicalModel (for structured pruning: a fresh export of the
pruned nn.Module, parity-checked against it) for quantization and export, and leaves the
original alone: the fp32 baseline that fidelity, latency and parity refer to stays the
unpruned model, so the report's accuracy drop is the drop of the final artifact against the
original, end to end. The report section lists per layer what was cut and, per stage
(original, pruned, pruned + quantized), parameters, MACs, size, latency and accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.model import CanonicalModel
from edgeport.core.plan import ensure_node_names
from edgeport.core.progress import Progress
from edgeport.options.groups import DataOptions, PruneOptions, SourceOptions
from edgeport.options.prune_spec import parse_prune
from edgeport.prune.by_channels import prune_by_channels
from edgeport.prune.by_magnitude import prune_by_magnitude
from edgeport.prune.context import PruneContext, progress_step, run_arrays
from edgeport.prune.measure import side_by_side_ms
from edgeport.prune.report import PruneResult, pruning_decision, pruning_section, stage_row
from edgeport.runtime.ort import OrtRunner

PRUNED_NAME = "pruned_fp32.onnx"
LATENCY_RUNS = 200
LATENCY_WARMUP = 20


def _measure_pruned(
    ctx: PruneContext, path: Path, static_batch: int
) -> tuple[float, str, dict[str, Any], dict[str, float]]:
    """Accuracy of the pruned fp32 model at ``path`` against the original on the eval data, and
    both models' latency side by side. Returns (drop, metric, fidelity, p50 ms per model)."""
    options = ctx.options
    with progress_step(ctx, "pruning: accuracy and latency of the pruned fp32 model"):
        outputs = run_arrays(OrtRunner(path, options.threads).run, ctx.eval_inputs, ctx.run_batch)
        drop, metric, fidelity = ctx.drop(outputs)
        feeds = {k: v[:static_batch] for k, v in ctx.eval_inputs.items()}
        runs = min(options.latency_runs, LATENCY_RUNS)
        timing = side_by_side_ms(
            {"original": ctx.canonical.onnx_model.SerializeToString(), "pruned": path},
            feeds,
            options.threads,
            runs,
            LATENCY_WARMUP,
        )
    return drop, metric, fidelity, timing


def prune_stage(
    options: PruneOptions,
    data_options: DataOptions,
    source_options: SourceOptions,
    canonical: CanonicalModel,
    reference_feeds: dict[str, np.ndarray],
    data: Any,
    profile: Any,
    scheme: str,
    decisions: list[dict[str, str]],
    out_dir: Path,
    progress: Progress,
    gate: Any = None,
) -> PruneResult:
    """Prune ``canonical``'s model as ``--prune`` says, within the part of the accuracy budget that
    quantization to ``scheme`` leaves (measured on the unpruned model, see edgeport.prune.context.RESERVE_MARGIN).

    ``options`` are the pruning options, ``data_options`` where calibration samples come from
    when quantization opened none, ``source_options`` how a channel-pruned model is exported
    again; ``data`` is the pipeline's DataPlan (eval data, calibration, batch); ``profile`` the
    device profile (for the quantization estimate). Returns the
    :class:`PruneResult`: the pruned CanonicalModel and its fp32 ONNX file (``out_dir``/pruned_fp32.onnx,
    kept in the bundle: the input of quantization, and a deployable fp32 model), the drop
    against the original, and the report section. Raises InputError when the method does not
    fit the source (channels on a non-PyTorch or flattened model) and ConversionError when the
    pruned model cannot be exported.
    """
    spec = parse_prune(options.prune)
    ctx = PruneContext(
        options,
        data_options,
        source_options,
        canonical,
        reference_feeds,
        data,
        profile,
        scheme,
        decisions,
        progress,
        gate,
    )
    if spec.method == "channels":
        pruned, details = prune_by_channels(ctx, spec)
    else:
        pruned, details = prune_by_magnitude(ctx, spec)
    ensure_node_names(pruned.onnx_model)
    path = out_dir / PRUNED_NAME
    onnx.save(pruned.onnx_model, str(path))

    drop, metric, fidelity, timing = _measure_pruned(ctx, path, data.static_batch)
    speedup = timing["original"] / timing["pruned"]
    original = stage_row(
        "original (fp32)",
        canonical.onnx_model,
        ctx,
        timing["original"],
        1.0,
        top1=fidelity.get("reference_top1"),
        drop=0.0,
    )
    after = stage_row(
        "pruned (fp32)",
        pruned.onnx_model,
        ctx,
        timing["pruned"],
        speedup,
        top1=fidelity.get("artifact_top1"),
        drop=drop,
    )
    section = pruning_section(ctx, spec, details, original, after, metric)
    decisions.append(pruning_decision(ctx, spec, section["what_it_buys"]))
    return PruneResult(pruned, path, drop, metric, section)
