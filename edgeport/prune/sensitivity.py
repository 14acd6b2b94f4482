"""Per-layer pruning sensitivity: prune one layer alone at a few ratios and measure how far the
model's outputs move from the original's on calibration inputs (no labels needed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeport.prune.budget import LayerCurve

PROBES = (0.25, 0.5, 0.75)  # ratios (snapped to each layer's ladder) at which a layer is measured


def output_distortion(reference: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """Relative squared error of the outputs, ``sum|o - r|^2 / sum|r|^2``, averaged over outputs:
    0 when unchanged; smooth, so it ranks layers where top-1 on a few samples would tie."""
    values = []
    for ref, out in zip(reference, outputs, strict=False):
        ref64, out64 = np.asarray(ref, np.float64), np.asarray(out, np.float64)
        if ref64.shape != out64.shape:
            return float("inf")
        energy = float(np.sum(ref64**2)) or 1.0
        values.append(float(np.sum((out64 - ref64) ** 2)) / energy)
    return float(np.mean(values)) if values else 0.0


def probe_ratios(options: list[float], probes: tuple[float, ...] = PROBES) -> list[float]:
    """The ladder rungs nearest to each probe (relative to the deepest rung), without repeats."""
    rungs = [o for o in options if o > 0]
    if not rungs:
        return []
    top = rungs[-1]
    picked = []
    for probe in probes:
        rung = min(rungs, key=lambda o: abs(o - probe * top / max(probes)))
        if rung not in picked:
            picked.append(rung)
    return picked


def measure_curves(curves: list[LayerCurve], distortion_at: Callable[[str, float], float], progress=None) -> None:
    """Fill each curve's ``measured`` points: ``distortion_at(layer, ratio)`` with only that layer
    pruned. ``progress(1)`` is called after each measurement."""
    for curve in curves:
        for ratio in probe_ratios(curve.options):
            curve.measured[ratio] = distortion_at(curve.name, ratio)
            if progress:
                progress(1)
