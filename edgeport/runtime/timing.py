"""Timing runners side by side, and the percentiles of the timings.

Shared by the local latency measurement (``verify/latency.py``) and the device harness
(``verify/harness.py``), so a device's figures are measured exactly as this host's: runners
alternate run by run after a warm-up, so that a noisy machine slows them alike. numpy and the
standard library only: the harness ships this file to other machines (``verify/remote.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeport.runtime.metrics import LATENCY_BUCKETS_S, cumulative_counts


def percentiles_ms(samples_ns: list[int]) -> dict[str, Any]:
    """Return p50/p90/p99/mean/min in milliseconds of timings given in nanoseconds, the run
    count, their sum, the runs themselves (thinned beyond 400) for the report's distribution
    chart, and every run counted into the serving histogram's buckets (``histogram_s``: the
    bounds in seconds and the cumulative counts, +Inf last; ``runtime/metrics.py``)."""
    values = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
        "min_ms": float(values.min()),
        "runs": int(values.size),
        "sum_ms": float(values.sum()),
        "histogram_s": {"le": list(LATENCY_BUCKETS_S), "cumulative": cumulative_counts(values / 1e3)},
        # For the report's distribution chart: every run up to 400, evenly thinned beyond.
        "samples_ms": [round(float(v), 5) for v in values[:: max(1, values.size // 400)]],
    }


def first_samples(feeds: dict[str, Any], count: int, axes: dict[str, int | None] | None = None) -> dict[str, Any]:
    """Return the first ``count`` samples of ``feeds``, cut along each input's batch axis
    (``axes``: name -> axis, None for an input without one, such as a rank-0 sample rate;
    missing names: axis 0)."""
    axes = axes or {}
    sliced = {}
    for name, value in feeds.items():
        axis = axes.get(name, 0)
        if axis is None or np.ndim(value) == 0:
            sliced[name] = value
        else:
            sliced[name] = np.take(value, range(min(count, value.shape[axis])), axis=axis)
    return sliced


def time_side_by_side(
    runners: dict[str, Any],
    feed_list: list[dict[str, np.ndarray]],
    runs: int,
    warmup: int,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, list[int]]:
    """Time each runner on the same samples, interleaved (A B B A ...), after a warm-up.

    Run ``i`` feeds ``feed_list[i % len(feed_list)]`` to every runner. Each runner is warmed up
    ``warmup`` times and on every sample at least once (a runtime plans memory per new shape).
    ``progress(1)`` is called after each run of all runners. Returns per runner name its
    ``runs`` timings in nanoseconds, in run order.
    """
    count = max(1, len(feed_list))
    for runner in runners.values():
        for i in range(max(warmup, len(feed_list))):
            runner.run(feed_list[i % count])
    names = list(runners)
    samples: dict[str, list[int]] = {name: [] for name in names}
    for i in range(runs):
        feeds = feed_list[i % count]
        # Alternate the order so neither runner always runs right after the other.
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter_ns()
            runners[name].run(feeds)
            samples[name].append(time.perf_counter_ns() - start)
        if progress:
            progress(1)
    return samples
