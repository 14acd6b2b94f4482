"""Pick and measure a cascade's threshold (issue 18): numbers in, numbers out (no models here).

A sample's answer is the small model's class when its confidence is at least the threshold,
else the large model's. Accuracy is top-1 against labels when there are labels, else top-1
agreement with the large (fp32) model; the drop is in points against the large model alone.
Mean latency per call is p_small * t_small + p_escalated * (t_small + t_large): an escalated
sample pays for both models, the small one ran first."""

from __future__ import annotations

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
        "mean_latency_ms": {
            "small": round(t_small, 4),
            "large": round(t_large, 4),
            "cascade": round(mean_latency(p_small, t_small, t_large), 4),
        },
    }


def choose_threshold(
    conf: np.ndarray,
    small: np.ndarray,
    large: np.ndarray,
    labels: np.ndarray | None,
    t_small: float,
    t_large: float,
    budget: float,
) -> dict[str, Any]:
    """Return the threshold with the lowest mean latency whose drop against the large model is
    within ``budget`` points on these samples, with its figures (see :func:`figures`) and the
    number of candidates tried. Candidates are every distinct confidence (the small model
    answers from that sample up), 0 (it answers all) and just above 1 (it answers none, always
    within budget). Among equal latencies the higher, safer threshold wins."""
    candidates = np.unique(np.concatenate([[0.0], conf, [np.nextafter(1.0, 2.0)]]))
    best: dict[str, Any] | None = None
    for threshold in candidates[::-1]:  # high to low: the first of equal latencies is the safest
        point = figures(conf, small, large, labels, float(threshold), t_small, t_large)
        if point["drop_vs_large"] > budget + 1e-9:
            continue
        if best is None or point["mean_latency_ms"]["cascade"] < best["mean_latency_ms"]["cascade"] - 1e-12:
            best = {"threshold": float(threshold), **point}
    assert best is not None  # the threshold above 1 escalates every sample: drop 0
    return {**best, "candidates": int(len(candidates))}
