"""Pick and measure a routing threshold (issue 18): numbers in, numbers out (no models here).

Both rules pick, among candidate thresholds, the one with the lowest mean latency whose drop
against the large model alone is within the budget (:func:`pick_threshold`).

- Confidence (the cascade): a sample's answer is the small model's class when its confidence is
  at least the threshold, else the large model's. Accuracy is top-1 against labels when there
  are labels, else top-1 agreement with the large (fp32) model; the drop is in points against
  the large model alone. Mean latency per call is p_small * t_small + p_escalated * (t_small +
  t_large): an escalated sample pays for both models, the small one ran first.
- Size: a sample whose size is above the threshold is the small model's, the rest the large
  one's; each runs one model, so the mean latency is the mean of each sample's own model's time
  (measured per sample at its natural size); the drop is the run's gate measure of the routed
  outputs against the large model's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Return the share of ``predicted`` classes equal to ``truth``, in percent."""
    return float(np.mean(predicted == truth) * 100.0) if len(truth) else 0.0


def mean_latency(p_small: float, t_small: float, t_large: float) -> float:
    """Return the expected time per sample of the cascade (ms) when the small model answers a
    share ``p_small`` of them alone and every other sample also runs the large model."""
    return p_small * t_small + (1.0 - p_small) * (t_small + t_large)


def figures(
    conf: np.ndarray,
    small: np.ndarray,
    large: np.ndarray,
    labels: np.ndarray | None,
    threshold: float,
    t_small: float,
    t_large: float,
) -> dict[str, Any]:
    """Return the cascade at ``threshold`` beside each model alone on one data set: accuracy of
    small, large and cascade, the drop (large - cascade, points), the share the small model
    answers and the mean latency per sample of each (ms). ``small``/``large`` are class ids."""
    truth = labels if labels is not None else large
    answered_small = conf >= threshold
    chosen = np.where(answered_small, small, large)
    p_small = float(np.mean(answered_small)) if len(conf) else 0.0
    large_accuracy = accuracy(large, truth)
    cascade_accuracy = accuracy(chosen, truth)
    return {
        "samples": int(len(conf)),
        "measured_against": "labels" if labels is not None else "fp32 agreement",
        "small_answers": round(p_small, 4),
        "accuracy": {
            "small": round(accuracy(small, truth), 3),
            "large": round(large_accuracy, 3),
            "cascade": round(cascade_accuracy, 3),
        },
        "drop_vs_large": round(large_accuracy - cascade_accuracy, 3),
        "drop_small_vs_large": round(large_accuracy - accuracy(small, truth), 3),
        "mean_latency_ms": {
            "small": round(t_small, 4),
            "large": round(t_large, 4),
            "cascade": round(mean_latency(p_small, t_small, t_large), 4),
        },
    }


def pick_threshold(candidates: np.ndarray, point: Callable[[float], dict[str, Any]], budget: float) -> dict[str, Any]:
    """Return the candidate threshold with the lowest mean latency (``point(t)["mean_latency_ms"]
    ["cascade"]``) whose ``point(t)["drop_vs_large"]`` is within ``budget`` points, with its
    figures, the number of candidates and the curve (threshold, share small, drop, mean ms per
    candidate). ``candidates`` ascend from "the small model answers all" to "none"; among equal
    latencies the higher, safer threshold wins (fewer samples on the small model)."""
    best: dict[str, Any] | None = None
    curve = []
    for threshold in candidates[::-1]:  # high to low: the first of equal latencies is the safest
        figures_at = point(float(threshold))
        ms, drop = figures_at["mean_latency_ms"]["cascade"], figures_at["drop_vs_large"]
        curve.append([float(threshold), figures_at["small_answers"], drop, ms])
        if drop > budget + 1e-9:
            continue
        if best is None or ms < best["mean_latency_ms"]["cascade"] - 1e-12:
            best = {"threshold": float(threshold), **figures_at}
    assert best is not None  # the last candidate sends every sample to the large model: drop 0
    return {**best, "candidates": int(len(candidates)), "curve": curve[::-1]}


def choose_threshold(
    conf: np.ndarray,
    small: np.ndarray,
    large: np.ndarray,
    labels: np.ndarray | None,
    t_small: float,
    t_large: float,
    budget: float,
) -> dict[str, Any]:
    """The confidence rule's :func:`pick_threshold`: candidates are every distinct confidence
    (the small model answers from that sample up), 0 (it answers all) and just above 1 (it
    answers none, always within budget). Returns the pick with its figures (:func:`figures`)."""
    candidates = np.unique(np.concatenate([[0.0], conf, [np.nextafter(1.0, 2.0)]]))
    return pick_threshold(candidates, lambda t: figures(conf, small, large, labels, t, t_small, t_large), budget)


def size_figures(
    sizes: np.ndarray,
    threshold: float,
    drop: Callable[[np.ndarray], float],
    ms_small: np.ndarray,
    ms_large: np.ndarray,
    measured_against: str,
) -> dict[str, Any]:
    """Return the size rule at ``threshold`` beside each model alone on one data set: the share
    the small model answers (``sizes > threshold``), the drop against the large model of the
    routed outputs and of the small model alone (``drop(answered_small)``, in budget points) and
    the mean latency per sample of each (ms; ``ms_small``/``ms_large`` per sample)."""
    small = sizes > threshold
    return {
        "samples": int(len(sizes)),
        "measured_against": measured_against,
        "small_answers": round(float(np.mean(small)) if len(sizes) else 0.0, 4),
        "drop_vs_large": round(float(drop(small)), 4),
        "drop_small_vs_large": round(float(drop(np.ones_like(small))), 4),
        "mean_latency_ms": {
            "small": round(float(np.mean(ms_small)), 4),
            "large": round(float(np.mean(ms_large)), 4),
            "cascade": round(float(np.mean(np.where(small, ms_small, ms_large))), 4),
        },
    }


def size_candidates(sizes: np.ndarray) -> np.ndarray:
    """The size rule's candidate thresholds, ascending: 0 (every sample, of size >= 1, goes to
    the small model) and every distinct size (the largest sends none)."""
    return np.unique(np.concatenate([[0], np.asarray(sizes, dtype=np.int64)]))
