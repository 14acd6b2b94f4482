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


def measure_side_by_side(
    runners: dict[str, Any], feeds: dict[str, np.ndarray], runs: int, warmup: int, progress=None
) -> dict[str, dict[str, float]]:
    """Time each runner on the same ``feeds``, interleaved (A B B A ...), after ``warmup`` runs each.

    Returns per runner name the latency percentiles in ms.
    """
    for runner in runners.values():
        for _ in range(warmup):
            runner.run(feeds)
    names = list(runners)
    samples: dict[str, list[int]] = {name: [] for name in names}
    for i in range(runs):
        # Alternate the order so neither runner always runs right after the other.
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter_ns()
            runners[name].run(feeds)
            samples[name].append(time.perf_counter_ns() - start)
        if progress:
            progress(1)
    return {name: percentiles_ms(values) for name, values in samples.items()}
