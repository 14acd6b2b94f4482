"""The mixed-precision search: start from the fastest plan, keep the most harmful layers
(error per unit of cost) in float until the accuracy budget holds.

The search works on plans (data) and calls back to evaluate each plan, so it knows nothing
of ONNX, TFLite or Core ML. Layers are ordered once, by the per-layer sensitivity: a layer's
noise ratio divided by what keeping it in float costs (MACs x the profile's cost difference).
The number of layers kept in float is found with an exponential then a binary search, so a
model with hundreds of layers needs about 2 log2(n) full evaluations, and ``max_evaluations``
and ``max_seconds`` cap it. It always returns the best point it found.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeport.core.plan import PrecisionPlan
from edgeport.quantize.sensitivity import LayerSensitivity
from edgeport.quantize.size_budget import fits


@dataclass
class SearchPoint:
    """One evaluated plan: which layers were kept in float and what it measured."""

    kept_float: list[str]
    drop: float  # the gate metric, percentage points (lower is better)
    feasible: bool
    speedup: float | None = None  # measured fp32 p50 / artifact p50 (None: not measured)
    estimated_cost: float | None = None  # profile cost model, fp32 = 1.0
    size_bytes: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifact: Any = None  # where the evaluated model is (backend-specific)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (without the artifact handle)."""
        return {
            "kept_float": self.kept_float,
            "kept_float_count": len(self.kept_float),
            "drop": self.drop if math.isfinite(self.drop) else None,  # None: the candidate failed (see metrics)
            "feasible": self.feasible,
            "speedup": self.speedup,
            "estimated_cost": self.estimated_cost,
            "size_bytes": self.size_bytes,
            "metrics": self.metrics,
        }


@dataclass
class SearchResult:
    """The search's outcome: the chosen point, every point tried, and why it stopped."""

    best: SearchPoint
    points: list[SearchPoint]
    order: list[str]
    met_budget: bool
    stopped_by: str | None
    budget: float
    max_size: int | None = None  # the size budget (bytes) points were held to; None: none

    def blocking_layers(self) -> list[str]:
        """Layers not kept in float by the most accurate quantized point that rank highest in
        harm: what blocks the budget when it was not met."""
        quantized = [p for p in self.points if not p.metrics.get("float_model")] or [self.best]
        nearest = min(quantized, key=lambda p: (p.drop, len(p.kept_float)))
        return [layer for layer in self.order if layer not in nearest.kept_float][:5]


CostFunction = Callable[[str, str], float]  # (layer, precision) -> relative cost per MAC


def promotion_order(
    sensitivity: dict[str, LayerSensitivity], plan: PrecisionPlan, float_precision: str, cost: CostFunction
) -> list[str]:
    """Order layers most harmful per unit of cost first: noise ratio / share of the model's
    cost that keeping the layer in float adds (MACs x the profile's cost difference).

    A layer whose float version costs no more than its quantized one goes first: keeping it
    in float is free. No layer's share counts as less than half an average layer's: every
    float island adds quantize/dequantize steps around it, and MACs understate small
    memory-bound layers (depthwise convs), which otherwise always rank first.
    """
    scored = []
    total = sum(cost(name, float_precision) * max(info.macs, 1) for name, info in sensitivity.items()) or 1.0
    floor = 0.5 / max(len(sensitivity), 1)
    for name, layer in plan.layers.items():
        info = sensitivity.get(name)
        if info is None:
            continue
        extra = (cost(name, float_precision) - cost(name, layer.precision)) * max(info.macs, 1) / total
        score = float("inf") if extra <= 0 else info.noise_ratio / max(extra, floor)
        scored.append((score, info.noise_ratio, name))
    scored.sort(key=lambda item: (-item[0], -item[1], item[2]))
    return [name for _, _, name in scored]


def plan_keeping_float(plan: PrecisionPlan, layers: list[str], float_precision: str) -> PrecisionPlan:
    """Return a copy of ``plan`` with ``layers`` set to ``float_precision``."""
    result = copy.deepcopy(plan)
    for name in layers:
        result.layers[name].precision = float_precision
    return result


def estimated_cost(
    plan: PrecisionPlan, sensitivity: dict[str, LayerSensitivity], cost: CostFunction, boundary_macs: float = 0.0
) -> float:
    """The plan's cost by the profile model, relative to everything in fp32 (weighted layers only),
    plus ``boundary_macs`` (the Q/DQ around float islands, quantize/islands.py) when the plan
    quantizes any layer: an all-float model has no Q/DQ to pay for."""
    total_fp32 = sum(max(s.macs, 1) * cost(name, "fp32") for name, s in sensitivity.items())
    total = sum(
        max(sensitivity[name].macs, 1) * cost(name, layer.precision)
        for name, layer in plan.layers.items()
        if name in sensitivity
    )
    if any(layer.precision != "fp32" for layer in plan.layers.values()):
        total += boundary_macs
    return total / total_fp32 if total_fp32 else 1.0


def search(
    plan: PrecisionPlan,
    sensitivity: dict[str, LayerSensitivity],
    evaluate: Callable[[PrecisionPlan], SearchPoint],
    budget: float,
    cost: CostFunction,
    float_precision: str = "fp32",
    max_evaluations: int = 10,
    max_seconds: float = 900.0,
    progress: Callable[[str], None] | None = None,
    companions: dict[str, list[str]] | None = None,
    max_size: int | None = None,
    boundary_macs: float = 0.0,
) -> SearchResult:
    """Find the cheapest plan whose gate metric ``drop`` is within ``budget`` and whose artifact
    is at most ``max_size`` bytes (when given).

    ``evaluate(plan)`` builds and measures one plan and returns a SearchPoint (its ``feasible``
    is recomputed here against both budgets). ``companions`` maps a layer to layers that must go
    to float with it (a promotion unit); ``boundary_macs``: see estimated_cost. Returns the
    SearchResult; when no evaluated plan meets both, ``best`` is the most accurate plan within the size budget, or
    the smallest plan when none is within it (keeping layers in float only adds bytes, so the
    search stops as soon as the all-quantized plan is over the size budget).
    """
    ranked = promotion_order(sensitivity, plan, float_precision, cost)
    units: list[list[str]] = []
    taken: set[str] = set()
    for layer in ranked:
        unit = [
            name for name in [layer, *(companions or {}).get(layer, [])] if name not in taken and name in plan.layers
        ]
        if unit:
            units.append(unit)
            taken.update(unit)
    order = [name for unit in units for name in unit]
    start = time.perf_counter()
    points: dict[int, SearchPoint] = {}
    stopped_by: str | None = None

    def out_of_budget() -> str | None:
        if len(points) >= max_evaluations:
            return f"--search_budget: {max_evaluations} evaluations"
        if time.perf_counter() - start > max_seconds:
            return f"--search_budget: {max_seconds:.0f} s"
        return None

    def evaluate_k(k: int) -> SearchPoint:
        layers = [name for unit in units[:k] for name in unit]
        candidate = plan_keeping_float(plan, layers, float_precision)
        point = evaluate(candidate)
        point.kept_float = layers
        point.feasible = accurate(point) and fits(point.size_bytes, max_size)
        point.estimated_cost = estimated_cost(candidate, sensitivity, cost, boundary_macs)
        points[k] = point
        if progress:
            progress(f"{len(layers)} layer(s) in float: drop {point.drop:.3f} (budget {budget})")
        return point

    def accurate(point: SearchPoint) -> bool:
        return point.drop <= budget + 1e-9

    # The layer count is searched on accuracy alone (it grows with the count); size only shrinks
    # as layers are quantized, so the fewest layers in float that meet accuracy is also the
    # smallest such plan, and a start already over the size budget ends the search.
    infeasible, feasible = -1, None
    first = evaluate_k(0)
    if not fits(first.size_bytes, max_size):
        stopped_by = "size budget: the all-quantized plan is already over it (keeping layers in float adds bytes)"
    elif accurate(first):
        feasible = 0
    else:
        infeasible, step = 0, 1
        while feasible is None and infeasible < len(units):
            stopped_by = out_of_budget()
            if stopped_by:
                break
            k = min(step, len(units))
            if accurate(evaluate_k(k)):
                feasible = k
            else:
                infeasible = k
            step *= 2
        while feasible is not None and feasible - infeasible > 1:
            stopped_by = out_of_budget()
            if stopped_by:
                break
            mid = (feasible + infeasible) // 2
            if accurate(evaluate_k(mid)):
                feasible = mid
            else:
                infeasible = mid
    ordered = [points[k] for k in sorted(points)]
    feasible_points = [p for p in ordered if p.feasible]
    if feasible_points:
        # Cheapest feasible: measured speed when measured, else the cost model.
        best = max(feasible_points, key=lambda p: (p.speedup or 0.0, -(p.estimated_cost or 1.0), -len(p.kept_float)))
    else:
        best = nearest_point(ordered, max_size)
    met = bool(feasible_points)
    return SearchResult(best, ordered, order, met, None if met else stopped_by, budget, max_size)


def nearest_point(points: list[SearchPoint], max_size: int | None) -> SearchPoint:
    """The point to return when none met both budgets: the most accurate one within the size
    budget, else (nothing fits) the smallest one, so the search never ends empty-handed."""
    within = [p for p in points if fits(p.size_bytes, max_size)]
    if within:
        return min(within, key=lambda p: (p.drop, len(p.kept_float)))
    return min(points, key=lambda p: (p.size_bytes if p.size_bytes is not None else math.inf, p.drop))
