"""Latency measured side by side: runners alternate run by run after a warm-up, so that a
noisy shared machine slows them alike; the figures that matter are medians and ratios.

The timing loop and the percentiles live in ``runtime/timing.py``, which the device harness
ships, so a device's figures are measured as this host's; this module adds the per-shape view.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.core.contracts import TimedTogether
from edgeport.runtime.timing import percentiles_ms, time_side_by_side


def shape_label(feeds: dict[str, np.ndarray]) -> str:
    """Return a short label of the input shapes of ``feeds`` (e.g. ``input_ids 1x17``)."""
    return ", ".join(f"{name} {'x'.join(str(d) for d in array.shape) or 'scalar'}" for name, array in feeds.items())


def timed_together(
    runners: dict[str, Any], feed_list: list[dict[str, np.ndarray]], runs: int, warmup: int, progress=None
) -> dict[str, list[int]] | None:
    """Let runners whose runtime times itself (a browser page) time themselves side by side, in
    one call; None when any of them cannot (then Python times them)."""
    first = next(iter(runners.values()))
    if not all(isinstance(runner, TimedTogether) for runner in runners.values()):
        return None
    samples = first.time_together(runners, feed_list, runs, warmup)
    if samples is not None and progress:
        progress(runs)
    return samples


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
    samples = timed_together(runners, feed_list, runs, warmup, progress)
    if samples is None:
        samples = time_side_by_side(runners, feed_list, runs, warmup, progress)
    names = list(runners)
    count = max(1, len(feed_list))
    labels = [shape_label(feeds) for feeds in feed_list]
    by_shape: dict[str, dict[str, list[int]]] = {}
    for i in range(runs):
        times = by_shape.setdefault(labels[i % count], {n: [] for n in names})
        for name in names:
            times[name].append(samples[name][i])
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
