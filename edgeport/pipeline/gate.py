"""The run's verdict: the accuracy budget it is held to, whether the artifact met it, and the
GateFailed (exit 3) raised once the bundle, marked failed, is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.core.errors import GateFailed
from edgeport.options.recipe import Recipe
from edgeport.quantize.auto import DEFAULT_BUDGET
from edgeport.verify.metrics import accuracy_drop


@dataclass
class Verdict:
    """The gate's verdict on one artifact."""

    budget: float | None  # the budget held to (points); None: no gate
    drop: float
    metric: str  # what ``drop`` measures
    passed: bool
    budget_unmet: bool  # the auto search returned the float model: no quantized plan met the budget


def gate_budget(recipe: Recipe, scheme: str) -> float | None:
    """Return the accuracy budget (points) the run is held to: ``--max_accuracy_drop``, or for the
    auto search (without a saved plan) DEFAULT_BUDGET when none was given; None means no gate."""
    if scheme == "auto" and not recipe.precision_plan and recipe.max_accuracy_drop is None:
        return DEFAULT_BUDGET
    return recipe.max_accuracy_drop


def judge(
    fidelity: dict[str, Any], budget: float | None, search_section: dict[str, Any] | None, user_budget: float | None
) -> Verdict:
    """Return the verdict on ``fidelity`` (verify's section) against ``budget``.

    ``user_budget`` is the ``--max_accuracy_drop`` the user set (None when not set).
    """
    drop, metric = accuracy_drop(fidelity)
    # With a budget the user set, returning the float model because no quantized plan met it
    # fails the run (exit 3): they asked for a quantized artifact within that budget.
    budget_unmet = bool(search_section and search_section["float_fallback"] == "budget")
    passed = (budget is None or drop <= budget + 1e-9) and not (budget_unmet and user_budget is not None)
    return Verdict(budget, drop, metric, passed, budget_unmet)


def raise_if_failed(verdict: Verdict, search_section: dict[str, Any] | None, bundle_dir: Path) -> None:
    """Raise GateFailed (exit 3) when the verdict failed, naming why and the kept ``bundle_dir``;
    return None when it passed."""
    if verdict.passed:
        return
    if verdict.budget_unmet and verdict.drop <= verdict.budget + 1e-9:
        assert search_section is not None  # budget_unmet comes from the search's section
        raise GateFailed(
            f"no quantized plan met --max_accuracy_drop {verdict.budget}; the bundle holds the float model",
            hint=f"{search_section['float_fallback_why']}; the bundle is kept, marked failed, in {bundle_dir}",
            bundle_dir=str(bundle_dir),
        )
    raise GateFailed(
        f"accuracy gate failed: {verdict.metric} is {verdict.drop:.3f} points, over the budget of {verdict.budget}"
        + (
            f"; layers that block it: {', '.join(search_section['blocking_layers'])}"
            if search_section and search_section["blocking_layers"]
            else ""
        ),
        hint=f"the artifact is kept, marked failed, in {bundle_dir}",
        bundle_dir=str(bundle_dir),
    )
