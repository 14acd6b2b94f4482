"""The verify stage for ONNX artifacts: fidelity on the eval data, latency side by side,
load time and memory, each for the fp32 baseline and the artifact in the same run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import ConversionError, InputError, describe_exception
from edgeport.core.progress import Progress
from edgeport.core.runner_spec import RunnerSpec
from edgeport.data.dataset import Dataset
from edgeport.runtime.ort import OrtRunner
from edgeport.verify.latency import measure_over_samples
from edgeport.verify.memory import runner_memory
from edgeport.verify.metrics import compare

# Ragged eval data: latency is measured on up to this many samples spread over the data.
LATENCY_SAMPLES = 16


def usable_samples(count: int, batch: int, dynamic: bool) -> int:
    """Samples that can be fed: all with a dynamic batch, else whole batches only."""
    return count if dynamic else count - count % batch


def run_dataset(runner: OrtRunner, dataset: Dataset, batch: int, dynamic: bool, progress=None) -> list[np.ndarray]:
    """Run ``runner`` over the dataset in batches of samples of one shape; return each output
    joined over the samples, sample-first (see :meth:`Dataset.join_outputs`)."""
    outputs: list[list[np.ndarray]] = []
    for start, stop in dataset.spans(batch, usable_samples(len(dataset), batch, dynamic)):
        outputs.append(runner.run(dataset.batch(start, stop)))
        if progress:
            progress(stop - start)
    return dataset.join_outputs(outputs)


def latency_feeds(dataset: Dataset, batch: int, limit: int = LATENCY_SAMPLES) -> list[dict[str, np.ndarray]]:
    """Return the inputs latency is measured on: the first batch when every sample has one
    shape; else up to ``limit`` batches of ``batch`` samples of one shape, spread evenly over
    the data, so that the timing follows the distribution of the real shapes."""
    if not dataset.ragged:
        return [dataset.batch(0, min(batch, len(dataset)))]
    # Whole batches only (a model with a fixed batch takes no other), unless none is whole.
    spans = [span for span in dataset.spans(batch) if span[1] - span[0] == batch] or dataset.spans(batch)
    picked = sorted({int(i) for i in np.linspace(0, len(spans) - 1, min(limit, len(spans)))})
    return [dataset.batch(*spans[i]) for i in picked]


def shapes_section(
    eval_data: Dataset, feed_list: list[dict[str, np.ndarray]], by_shape: list[dict[str, Any]]
) -> dict[str, Any]:
    """Say which input shapes latency was measured on: the eval samples' own shapes (ragged
    data: per shape, runs and both p50s) or the one shape every sample has."""
    if eval_data.ragged:
        how = f"over the eval data's real shapes: {len(feed_list)} samples spread over {len(eval_data)}"
    else:
        how = "one shape: every eval sample has it"
    free = any(isinstance(d, str) and d != eval_data.batch_dim for s in eval_data.specs for d in s.shape)
    return {
        "measured_on": how,
        "fixed_shape": not free,  # the model accepts only these shapes (besides its batch)
        "samples": len(feed_list),
        "by_shape": by_shape,
    }


def where_measured(wanted: tuple[str, ...], used: list[str]) -> str:
    """Say honestly where latency was measured: on the profile's runtime, or only emulated."""
    missing = [p for p in wanted if p not in used]
    if not missing:
        return "measured on the target's runtime (this host)"
    return (
        f"emulated: ran on this host's {', '.join(used)}; the target's {', '.join(missing)} is not "
        "available here, so these figures are not the device's (use edgeport verify on the device)"
    )


def open_references(fidelity: RunnerSpec, latency: RunnerSpec, threads: int) -> tuple[Any, Any]:
    """Open the fp32 runners for fidelity and for timing; one session serves both when they would
    be the same: one file and runtime, and the timing runner resolved to the providers the fidelity
    one would get (a big model's fp32 session is its whole weights again: 2 of them put int8-dynamic
    at 3.1x the weights)."""
    timing = latency.open(threads)
    same_file = (fidelity.kind, fidelity.path) == (latency.kind, latency.path)
    other = {k: v for k, v in fidelity.kwargs.items() if k != "providers"}
    if same_file and other == {k: v for k, v in latency.kwargs.items() if k != "providers"}:
        wanted = list(fidelity.kwargs.get("providers", ["CPUExecutionProvider"]))
        if getattr(timing, "providers", None) == wanted:
            return timing, timing
    return fidelity.open(threads), timing


def verify_artifact(
    fidelity_reference: RunnerSpec,
    latency_reference: RunnerSpec,
    artifact: RunnerSpec,
    eval_data: Dataset,
    output_names: list[str],
    *,
    batch: int,
    dynamic: bool,
    latency_batch: int,
    threads: int,
    measured_label: Callable[[Any], str],
    latency_runs: int,
    warmup_runs: int,
    work: Path,
    progress: Progress,
    emulation: RunnerSpec | None = None,
    gate: Any = None,
) -> dict[str, Any]:
    """Compare ``artifact`` with the fp32 model on ``eval_data``, and time it side by side with
    ``latency_reference`` (fp32 in the same runtime).

    ``fidelity_reference`` gives the fp32 outputs (the parity-checked ONNX model);
    ``measured_label(artifact_runner)`` says whether the timing ran on the target's runtime.
    ``emulation``: when the artifact's runtime cannot run on this host, a stand-in that gives
    its outputs; fidelity is then labelled emulated and nothing is timed (see
    :func:`verify_emulated`). ``gate`` (edgeport.verify.gate.Gate) adds each output's figure on
    the measure chosen for it.
    Returns the report sections: fidelity, latency, load_time_s, memory, runner.
    Raises ConversionError when the runtime cannot load the artifact.
    """
    if emulation is not None:
        return verify_emulated(
            fidelity_reference, latency_reference, emulation, eval_data, output_names, batch, dynamic,
            latency_batch, threads, progress, gate,
        )  # fmt: skip
    with progress.step("load runtimes"):
        try:
            artifact_runner = artifact.open(threads)
        except InputError:
            raise  # something the user can fix (no browser installed): exit 2, as it is
        except Exception as exc:
            raise ConversionError(f"{artifact.kind} cannot load the artifact: {describe_exception(exc)}") from exc
        reference_runner, timing_reference = open_references(fidelity_reference, latency_reference, threads)
    usable = usable_samples(len(eval_data), batch, dynamic)
    with progress.step("evaluate fp32 and artifact", total=2 * usable) as advance:
        reference_all = run_dataset(reference_runner, eval_data, batch, dynamic, advance)
        artifact_all = run_dataset(artifact_runner, eval_data, batch, dynamic, advance)
    labels = eval_data.labels[: len(reference_all[0])] if eval_data.labels is not None else None
    fidelity = compare(reference_all, artifact_all, output_names, labels, gate)

    feed_list = latency_feeds(eval_data, latency_batch)
    with progress.step("measure latency side by side", total=latency_runs) as advance:
        latency, by_shape = measure_over_samples(
            {"reference": timing_reference, "artifact": artifact_runner},
            feed_list,
            latency_runs,
            warmup_runs,
            advance,
        )
    feeds_path = work / "latency_feeds.npz"
    np.savez(feeds_path, **feed_list[0])
    with progress.step("measure memory"):
        memory = {
            name: runner_memory(spec, runner, feeds_path, threads)
            for name, spec, runner in (
                ("reference", latency_reference, timing_reference),
                ("artifact", artifact, artifact_runner),
            )
        }
    runtime = artifact_runner.describe()
    return {
        "fidelity": fidelity,
        "latency": {
            **latency,
            "speedup": latency["reference"]["p50_ms"] / latency["artifact"]["p50_ms"],
            "measured": measured_label(artifact_runner),
            "runtime": f"{runtime.get('runtime')} {runtime.get('version', '')}".strip(),
            "reference_model": Path(latency_reference.path).name,
            "threads": threads,
            "batch": latency_batch,
            "warmup": warmup_runs,
            "shapes": shapes_section(eval_data, feed_list, by_shape),
        },
        "load_time_s": {"reference": timing_reference.load_seconds, "artifact": artifact_runner.load_seconds},
        "memory": memory,
        "runner": runtime,
        "reference_runner": timing_reference.describe(),
    }


def verify_emulated(
    fidelity_reference: RunnerSpec,
    latency_reference: RunnerSpec,
    emulation: RunnerSpec,
    eval_data: Dataset,
    output_names: list[str],
    batch: int,
    dynamic: bool,
    latency_batch: int,
    threads: int,
    progress: Progress,
    gate: Any = None,
) -> dict[str, Any]:
    """Fidelity of an artifact that cannot run here, from its emulation; no timing at all.

    The fidelity section gets ``emulated`` (how the emulation was made); latency, load time and
    memory say "not run" (the reason comes from the emulation spec's ``not_run``) and hold no
    numbers, so nothing measured on a stand-in passes for the device's. Returns the same
    sections as :func:`verify_artifact`.
    """
    reason = emulation.kwargs.get("not_run") or "not run: the artifact's runtime is not available on this host"
    with progress.step("load fp32 model and the emulation"):
        try:
            emulated = emulation.open(threads)
        except Exception as exc:
            raise ConversionError(f"cannot load the emulation of the artifact: {describe_exception(exc)}") from exc
        reference_runner = fidelity_reference.open(threads)
    usable = usable_samples(len(eval_data), batch, dynamic)
    with progress.step("evaluate fp32 and the artifact (emulated)", total=2 * usable) as advance:
        reference_all = run_dataset(reference_runner, eval_data, batch, dynamic, advance)
        emulated_all = run_dataset(emulated, eval_data, batch, dynamic, advance)
    labels = eval_data.labels[: len(reference_all[0])] if eval_data.labels is not None else None
    fidelity = compare(reference_all, emulated_all, output_names, labels, gate)
    described = emulated.describe()
    fidelity["emulated"] = described.get("emulated") or "emulated"
    return {
        "fidelity": fidelity,
        "latency": {
            "not_run": True,
            "measured": reason,
            "reference": None,
            "artifact": None,
            "speedup": None,
            "runtime": described.get("runtime"),
            "reference_model": Path(latency_reference.path).name,
            "threads": threads,
            "batch": latency_batch,
            "warmup": None,
        },
        "load_time_s": {"reference": None, "artifact": None, "not_run": reason},
        "memory": {"not_run": reason},
        "runner": described,
    }
