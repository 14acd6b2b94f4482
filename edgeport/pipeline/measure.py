"""Verify and measure the built artifact: fidelity and latency against fp32 in the same runtime,
the ops its runtime would not run where meant, and per-kernel timings where a profiler exists."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.core.progress import Progress
from edgeport.core.runner_spec import RunnerSpec
from edgeport.options.recipe import Recipe
from edgeport.pipeline.build import Built
from edgeport.pipeline.data import DataPlan
from edgeport.profiles.hardware import profile_qualifier, qualify
from edgeport.prune.stage import PruneResult
from edgeport.verify.evaluate import verify_artifact
from edgeport.verify.gate import Gate
from edgeport.verify.tuning import tune


@dataclass
class Measured:
    """What verification found about the artifact."""

    verified: dict[str, Any]  # verify_artifact's result: fidelity, latency, load time, memory, runner
    latency_reference: RunnerSpec  # the fp32 model timed side by side with the artifact
    op_check: dict[str, Any]
    profile_data: dict[str, Any] | None  # per-kernel timings (None without a kernel profiler)
    pruning_section: dict[str, Any] | None  # the report's finished "pruning" section (None without --prune)
    tuning: dict[str, Any] | None = None  # batch and thread tuning (None unless asked for; issue 18)


def measure_artifact(
    recipe: Recipe,
    built: Built,
    data: DataPlan,
    output_names: list[str],
    gate: Gate,
    pruning: PruneResult | None,
    out_dir: Path,
    work: Path,
    progress: Progress,
) -> Measured:
    """Make the fp32 timing reference (in ``out_dir`` when it needs its own file), verify the
    artifact against the fp32 baseline on the eval data, check its ops, profile its kernels and
    complete the pruning section with the artifact as verified. Returns the measurements."""
    backend = built.backend
    with progress.step("fp32 reference for timing"):
        latency_reference, _ = backend.fp32_reference(built.baseline_path, out_dir, work)
    verified = verify_artifact(
        RunnerSpec("onnxruntime", str(built.baseline_path)),
        latency_reference,
        built.artifact.runner,
        data.eval_data,
        output_names,
        batch=data.batch,
        dynamic=data.dynamic,
        latency_batch=data.static_batch,
        threads=recipe.threads,
        # The backend says which runtime ran; the qualifier says when this host is not the target's
        # CPU or accelerator (profiles/hardware.py, the one place that sentence is written).
        measured_label=lambda runner: qualify(backend.measured_label(runner), profile_qualifier(backend.profile)),
        latency_runs=recipe.latency_runs,
        warmup_runs=recipe.warmup_runs,
        work=work,
        progress=progress,
        emulation=built.artifact.emulation,
        gate=gate,
    )
    op_check = backend.check_ops(built.artifact_path)
    profile_data = None
    if backend.kernel_profiler:
        with progress.step(f"profile kernels ({backend.kernel_profiler})"):
            profile_data = backend.profile_kernels(
                built.baseline_path,
                built.artifact_path,
                data.eval_data.batch(0, data.static_batch),
                recipe.threads,
                {name: layer.nodes for name, layer in built.plan.layers.items()},
            )
    pruning_section = (
        pruning.finish(verified, built.artifact_path, f"pruned + {built.plan.scheme} ({backend.format})", recipe.metric)
        if pruning
        else None
    )
    tuning = tune_artifact(recipe, built, data, output_names, gate, latency_reference, progress)
    return Measured(verified, latency_reference, op_check, profile_data, pruning_section, tuning)


def tune_artifact(
    recipe: Recipe,
    built: Built,
    data: DataPlan,
    output_names: list[str],
    gate: Gate,
    latency_reference: RunnerSpec,
    progress: Progress,
) -> dict[str, Any] | None:
    """Sweep batch sizes x threads when the recipe asks for it (edgeport/verify/tuning.py);
    return the report's ``tuning`` section, None when not asked, or a ``not_run`` reason when the
    artifact's runtime is only emulated here."""
    options = recipe.tuning
    if not options.active:
        return None
    if built.artifact.emulation is not None:
        return {"not_run": "the artifact's runtime is not available on this host: nothing was timed"}
    grid = len(options.grid_batches) * len(options.grid_threads)
    with progress.step(f"tune batch x threads ({grid} points)", total=grid) as advance:
        return tune(
            built.artifact.runner,
            latency_reference,
            RunnerSpec("onnxruntime", str(built.baseline_path)),
            data.eval_data,
            output_names,
            objective=options.objective,
            batches=options.grid_batches,
            threads=options.grid_threads,
            max_latency_ms=options.max_latency_ms,
            dynamic=data.dynamic,
            static_batch=data.static_batch,
            runs=options.latency_runs,
            warmup=options.warmup_runs,
            gate=gate,
            progress=advance,
        )
