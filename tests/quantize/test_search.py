"""Unit tests of the precision search on a synthetic model: each layer adds a known drop when
quantized, so the best plan is known exactly."""

from __future__ import annotations

import math

from edgeport.core.plan import LayerPrecision, PrecisionPlan
from edgeport.quantize.search import SearchPoint, promotion_order, search
from edgeport.quantize.sensitivity import LayerSensitivity

# layer -> (SQNR dB when quantized, drop in points it adds)
LAYERS = {"a": (10.0, 2.0), "b": (20.0, 0.5), "c": (30.0, 0.1), "d": (40.0, 0.05), "e": (15.0, 1.0)}


def _plan() -> PrecisionPlan:
    plan = PrecisionPlan(scheme="int8", profile="test", details={})
    for name in LAYERS:
        plan.layers[name] = LayerPrecision("int8", "MatMul", [name])
    return plan


def _sensitivity() -> dict[str, LayerSensitivity]:
    return {name: LayerSensitivity(name, "MatMul", sqnr, macs=1000) for name, (sqnr, _) in LAYERS.items()}


def _cost(layer: str, precision: str) -> float:
    return 1.0 if precision == "fp32" else 0.25


def _evaluate(evaluated: list[PrecisionPlan]):
    def evaluate(plan: PrecisionPlan) -> SearchPoint:
        evaluated.append(plan)
        # 0.02: what the float parts lose too (so a budget of 0.01 is out of reach)
        drop = 0.02 + sum(LAYERS[n][1] for n, layer in plan.layers.items() if layer.precision == "int8")
        return SearchPoint(kept_float=[], drop=drop, feasible=False)

    return evaluate


def test_promotion_order_puts_the_noisiest_layers_first():
    assert promotion_order(_sensitivity(), _plan(), "fp32", _cost) == ["a", "e", "b", "c", "d"]


def test_search_keeps_the_fewest_layers_in_float_that_meet_the_budget():
    evaluated: list[PrecisionPlan] = []
    result = search(_plan(), _sensitivity(), _evaluate(evaluated), budget=0.7, cost=_cost, max_evaluations=20)
    # all int8: 3.67 points; a, e in float: 0.67 <= 0.7; a alone: 1.67 > 0.7
    assert result.met_budget and result.best.kept_float == ["a", "e"]
    assert math.isclose(result.best.drop, 0.67)
    assert result.stopped_by is None and len(evaluated) == len(result.points) <= 5


def test_search_ends_with_the_most_accurate_point_when_the_budget_is_out_of_reach():
    result = search(_plan(), _sensitivity(), _evaluate([]), budget=0.01, cost=_cost, max_evaluations=20)
    assert not result.met_budget
    assert result.best.drop == min(p.drop for p in result.points)


def test_search_budget_stops_it_and_says_why():
    evaluated: list[PrecisionPlan] = []
    result = search(_plan(), _sensitivity(), _evaluate(evaluated), budget=0.01, cost=_cost, max_evaluations=2)
    assert len(evaluated) == 2 and result.stopped_by == "--search_budget: 2 evaluations"


def test_companions_go_to_float_together():
    result = search(
        _plan(), _sensitivity(), _evaluate([]), budget=1.7, cost=_cost, max_evaluations=20, companions={"a": ["d"]}
    )
    assert result.best.kept_float == ["a", "d"]  # 1.62 points: a's unit brings d along
