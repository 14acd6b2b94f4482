"""Batch and thread tuning (issue 18): sweep batch sizes x thread counts side by side, choose
the point to recommend, and check accuracy at the chosen batch.

Each point times the artifact and the fp32 reference interleaved after a warm-up
(``runtime/timing.py``, the loop every latency figure here uses) on the same real eval batch.
Throughput is ``batch / per-call p50``: inferences per second from the median call. The latency
target is checked against the artifact's **p99 per call**, because a request served from a batch
waits for the whole call and a service's latency objective is about its slow tail, not its median.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.core.errors import describe_exception
from edgeport.core.runner_spec import RunnerSpec
from edgeport.data.dataset import Dataset
from edgeport.runtime.timing import percentiles_ms, time_side_by_side
from edgeport.verify.evaluate import latency_feeds, run_dataset
from edgeport.verify.metrics import compare

# The percentile a --max_latency_ms target is checked against (see the module docstring).
TARGET_PERCENTILE = "p99_ms"


def skip_reason(batch: int, eval_count: int, dynamic: bool, static_batch: int) -> str | None:
    """Why batch ``batch`` cannot be measured (a fixed batch dimension, too few eval samples), or None."""
    if not dynamic and batch != static_batch:
        return (
            f"the model's batch dimension is fixed at {static_batch}: it cannot run batch {batch} "
            "(export it with a dynamic batch, e.g. --dynamic_batch, to sweep batches)"
        )
    if batch > eval_count:
        return f"the eval data has {eval_count} samples, fewer than batch {batch}"
    return None


def _figures(samples_ns: list[int], batch: int) -> dict[str, Any]:
    """Per-call percentiles (without the raw runs) and the throughput from the median call."""
    stats = {k: v for k, v in percentiles_ms(samples_ns).items() if k not in ("samples_ms", "histogram_s")}
    stats["throughput_per_s"] = batch / (stats["p50_ms"] / 1000.0)
    return stats


def sweep_grid(
    artifact: RunnerSpec,
    reference: RunnerSpec,
    eval_data: Dataset,
    *,
    batches: list[int],
    threads: list[int],
    dynamic: bool,
    static_batch: int,
    runs: int,
    warmup: int,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Time artifact and fp32 reference at every (batch, threads) point of the grid, side by side.

    A model with a fixed batch runs only its own batch (added to the grid when missing); the
    other batches are returned as skipped points with the reason, never measured or faked.
    Returns one dict per point: batch, threads, and either ``artifact``/``reference`` figures
    (p50/p90/p99/mean/min ms per call, runs, throughput_per_s) and ``speedup``, or ``skipped``.
    """
    wanted = list(batches) if dynamic or static_batch in batches else [*batches, static_batch]
    points: list[dict[str, Any]] = []
    for count in threads:
        runners = {"reference": reference.open(count), "artifact": artifact.open(count)}
        for batch in wanted:
            reason = skip_reason(batch, len(eval_data), dynamic, static_batch)
            if reason:
                points.append({"batch": batch, "threads": count, "skipped": reason})
                continue
            try:
                samples = time_side_by_side(runners, latency_feeds(eval_data, batch), runs, warmup)
            except Exception as exc:  # e.g. an artifact whose format fixed the batch the source left free
                reason = f"the runtime refused batch {batch}: {describe_exception(exc)}"
                points.append({"batch": batch, "threads": count, "skipped": reason})
                continue
            art, ref = _figures(samples["artifact"], batch), _figures(samples["reference"], batch)
            points.append(
                {
                    "batch": batch,
                    "threads": count,
                    "artifact": art,
                    "reference": ref,
                    "speedup": ref["p50_ms"] / art["p50_ms"],
                }
            )
            if progress:
                progress(1)
        del runners  # free both sessions before the next thread count opens its own
    return points


def choose_point(points: list[dict[str, Any]], max_latency_ms: float | None) -> dict[str, Any]:
    """Choose the point to recommend among the measured ``points``.

    Without a target: the highest artifact throughput. With one: the highest throughput among
    points whose artifact p99 per call is within ``max_latency_ms``; when none is, the point
    with the lowest p99 (never nothing), and ``met`` says so. Returns ``batch``, ``threads``,
    ``met`` (None without a target) and ``why``.
    """
    measured = [p for p in points if "artifact" in p]
    if not measured:
        return {"batch": None, "threads": None, "met": None, "why": "no point could be measured"}

    def throughput(p: dict[str, Any]) -> float:
        return p["artifact"]["throughput_per_s"]

    def tail(p: dict[str, Any]) -> float:
        return p["artifact"][TARGET_PERCENTILE]

    if max_latency_ms is None:
        best = max(measured, key=throughput)
        met, why = None, f"highest throughput of {len(measured)} measured points (no --max_latency_ms)"
    else:
        within = [p for p in measured if tail(p) <= max_latency_ms]
        if within:
            best = max(within, key=throughput)
            met = True
            why = (
                f"highest throughput of the {len(within)} of {len(measured)} points whose artifact p99 per call "
                f"is within {max_latency_ms:g} ms"
            )
        else:
            best = min(measured, key=tail)
            met = False
            why = (
                f"no point met --max_latency_ms {max_latency_ms:g} (the lowest artifact p99 per call was "
                f"{tail(best):.4g} ms): the lowest-latency point is recommended instead"
            )
    return {
        "batch": best["batch"],
        "threads": best["threads"],
        "met": met,
        "why": why,
        "throughput_per_s": throughput(best),
        "p50_ms": best["artifact"]["p50_ms"],
        "p99_ms": tail(best),
    }


def fidelity_at_batch(
    fidelity_reference: RunnerSpec,
    artifact: RunnerSpec,
    eval_data: Dataset,
    output_names: list[str],
    batch: int,
    threads: int,
    gate: Any = None,
) -> dict[str, Any]:
    """Run the eval data through the artifact in batches of ``batch`` and of 1, and compare both
    with the fp32 outputs (batch 1): dynamic int8 quantizes activations per batch, so the
    batch changes the outputs. Returns ``{"batch_1": ..., "batch_<n>": ...}`` (fidelity as
    :func:`edgeport.verify.metrics.compare` gives it) and the largest output difference
    between the two batchings (``max_abs_diff_between_batches``)."""
    reference_runner, artifact_runner = fidelity_reference.open(threads), artifact.open(threads)
    reference = run_dataset(reference_runner, eval_data, 1, True)
    labels = eval_data.labels[: len(reference[0])] if eval_data.labels is not None else None
    single = run_dataset(artifact_runner, eval_data, 1, True)
    batched = run_dataset(artifact_runner, eval_data, batch, True)
    section: dict[str, Any] = {"batch": batch}
    for key, outputs in (("batch_1", single), (f"batch_{batch}", batched)):
        section[key] = compare(reference, outputs, output_names, labels, gate)
    section["max_abs_diff_between_batches"] = max(
        float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) for a, b in zip(single, batched, strict=True)
    )
    return section


def tune(
    artifact: RunnerSpec,
    latency_reference: RunnerSpec,
    fidelity_reference: RunnerSpec,
    eval_data: Dataset,
    output_names: list[str],
    *,
    objective: str,
    batches: list[int],
    threads: list[int],
    max_latency_ms: float | None,
    dynamic: bool,
    static_batch: int,
    runs: int,
    warmup: int,
    gate: Any = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Sweep the grid, choose the point and check accuracy at its batch; return the report's
    ``tuning`` section (grid, points, chosen, the percentile the target is checked against, the
    recommended session options and ``fidelity_at_batch``)."""
    points = sweep_grid(
        artifact, latency_reference, eval_data, batches=batches, threads=threads, dynamic=dynamic,
        static_batch=static_batch, runs=runs, warmup=warmup, progress=progress,
    )  # fmt: skip
    chosen = choose_point(points, max_latency_ms)
    if chosen["batch"] is None:
        fidelity = {"skipped": "no point was measured"}
    elif not dynamic or not eval_data.batchable:
        fidelity = {"skipped": f"the model runs only batch {static_batch}: the fidelity section is at that batch"}
    else:
        try:
            fidelity = fidelity_at_batch(
                fidelity_reference, artifact, eval_data, output_names, chosen["batch"], chosen["threads"], gate
            )
        except Exception as exc:  # a runtime that refuses batch 1 or the chosen batch on some input
            fidelity = {"skipped": f"could not run the eval data at batch {chosen['batch']}: {describe_exception(exc)}"}
    return {
        "objective": objective,
        "grid": {"batch_sizes": batches, "threads": threads},
        "max_latency_ms": max_latency_ms,
        "target_percentile": "p99 per call (artifact)",
        "throughput": "inferences/s = batch / per-call p50",
        "runs_per_point": runs,
        "warmup": warmup,
        "points": points,
        "chosen": chosen,
        "recommended_session_options": (
            {"batch": chosen["batch"], "intra_op_num_threads": chosen["threads"]} if chosen["batch"] else None
        ),
        "fidelity_at_batch": fidelity,
    }
