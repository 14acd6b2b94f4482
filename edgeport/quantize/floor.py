"""The floor of ``--quantization auto``: when the float model beats every quantized plan.

The float model is always one of the search's points. :func:`float_fallback` decides, from the
points the search measured, whether it must be returned instead of the best quantized plan,
and says why in a sentence for the report's decision.
"""

from __future__ import annotations

import math

from edgeport.quantize.search import SearchPoint, SearchResult

# A quantized plan is chosen over the float model only when it measured at least this much
# faster than fp32 in the same runtime: below it the difference is within run-to-run noise.
MIN_SPEEDUP = 1.05


def float_fallback(result: SearchResult) -> tuple[str, str] | None:
    """Whether the search must return the float model instead of its best quantized point, and
    why: ``("budget", sentence)`` when no quantized plan met the budget, ``("speed", sentence)``
    when the best that did measured no faster than fp32 (below MIN_SPEEDUP) in the same runtime.
    The sentence names the quantized point that came nearest and what would unlock it. Returns
    None when the quantized point stands (untimed candidates, Core ML off macOS, are judged by
    the budget alone)."""
    # A point with every layer in float is the float model itself: it meets any budget but is
    # no quantized plan.
    quantized = [p for p in result.points if len(p.kept_float) < len(result.order) or not result.order]

    def described(point: SearchPoint) -> str:
        if point.metrics.get("failed"):
            return point.metrics["failed"]
        speed = f"{point.speedup:.2f}x fp32" if point.speedup is not None else "speed not measured here"
        return f"{len(point.kept_float)} layer(s) in float: drop {point.drop:.3f} points at {speed}"

    if not any(p.feasible for p in quantized):
        nearest = min(quantized or result.points, key=lambda p: p.drop)
        faster = [p for p in quantized if math.isfinite(p.drop) and (p.speedup is None or p.speedup >= MIN_SPEEDUP)]
        unlock = (
            f"--max_accuracy_drop {math.ceil(min(p.drop for p in faster) * 100) / 100:g} would accept a faster plan"
            if faster
            else "no quantized plan tried was faster than fp32 either"
        )
        return "budget", (
            f"no quantized plan met the budget of {result.budget} points; nearest: {described(nearest)}; {unlock}"
        )
    best = result.best
    # The search's best may be the all-float plan (it met the budget and timed fastest): that is
    # the float model's case too, whatever its noisy speed.
    if not any(p is best for p in quantized) or (best.speedup is not None and best.speedup < MIN_SPEEDUP):
        within = [p for p in quantized if p.feasible and p.speedup is not None]
        nearest = (
            f"the fastest quantized plan within the budget ({described(max(within, key=lambda p: p.speedup))})"
            if within
            else "only plans with every layer in float met the budget"
        )
        return "speed", (
            f"no quantized plan within the budget was faster than fp32 on this runtime: {nearest}; int8 kernels "
            "do not pay for these layers here (a device with fast int8 for these ops, or larger inputs, would)"
        )
    return None
