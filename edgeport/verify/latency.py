"""Latency measured side by side: runners alternate run by run after a warm-up, so that a
noisy shared machine slows them alike; the figures that matter are medians and ratios."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def percentiles_ms(samples_ns: list[int]) -> dict[str, float]:
    """Return p50/p90/p99/mean/min in milliseconds of timings given in nanoseconds."""
    values = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
        "min_ms": float(values.min()),
        "runs": int(values.size),
        # For the report's distribution chart: every run up to 400, evenly thinned beyond.
        "samples_ms": [round(float(v), 5) for v in values[:: max(1, values.size // 400)]],
    }


def shape_label(feeds: dict[str, np.ndarray]) -> str:
    """Return a short label of the input shapes of ``feeds`` (e.g. ``input_ids 1x17``)."""
    return ", ".join(f"{name} {'x'.join(str(d) for d in array.shape) or 'scalar'}" for name, array in feeds.items())


def measure_over_samples(
    runners: dict[str, Any], feed_list: list[dict[str, np.ndarray]], runs: int, warmup: int, progress=None
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Time each runner on the same samples, interleaved (A B B A ...), after a warm-up.

    Run ``i`` feeds ``feed_list[i % len(feed_list)]`` to every runner, so the percentiles are
    over the distribution of the samples' shapes (sentences at their own lengths), not one
    padded shape. Each runner is warmed up ``warmup`` times and on every sample at least once
    (a runtime plans memory per new shape). Returns per runner name the latency percentiles in
    ms, and per distinct input shape its runs and both p50s.
    """
    count = max(1, len(feed_list))
    for runner in runners.values():
        for i in range(max(warmup, len(feed_list))):
            runner.run(feed_list[i % count])
    names = list(runners)
    samples: dict[str, list[int]] = {name: [] for name in names}
    by_shape: dict[str, dict[str, list[int]]] = {}
    labels = [shape_label(feeds) for feeds in feed_list]
    for i in range(runs):
        feeds = feed_list[i % count]
        # Alternate the order so neither runner always runs right after the other.
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter_ns()
            runners[name].run(feeds)
            elapsed = time.perf_counter_ns() - start
            samples[name].append(elapsed)
            by_shape.setdefault(labels[i % count], {n: [] for n in names})[name].append(elapsed)
        if progress:
            progress(1)
    shapes = [
        {
            "shape": label,
            "runs": len(times[names[0]]),
            **{f"{name}_p50_ms": float(np.percentile(np.asarray(times[name]) / 1e6, 50)) for name in names},
        }
        for label, times in by_shape.items()
    ]
    return {name: percentiles_ms(values) for name, values in samples.items()}, shapes


def measure_side_by_side(
    runners: dict[str, Any],
    feeds: dict[str, np.ndarray] | list[dict[str, np.ndarray]],
    runs: int,
    warmup: int,
    progress=None,
) -> dict[str, dict[str, float]]:
    """Time each runner on the same ``feeds`` (one batch, or a list of samples taken in turn),
    interleaved (A B B A ...), after ``warmup`` runs each.

    Returns per runner name the latency percentiles in ms (see :func:`measure_over_samples`).
    """
    feed_list = feeds if isinstance(feeds, list) else [feeds]
    return measure_over_samples(runners, feed_list, runs, warmup, progress)[0]
