"""The run's verdict: the accuracy budget it is held to, whether the artifact met it, and the
GateFailed (exit 3) raised once the bundle, marked failed, is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.core.errors import GateFailed
from edgeport.core.sizes import format_size, over_budget, parse_size
from edgeport.options.recipe import Recipe
from edgeport.profiles.schema import DeviceProfile
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
    size: SizeVerdict | None = None  # against the size budget, when there is one
    accuracy_passed: bool = True  # the accuracy part of ``passed``


@dataclass(frozen=True)
class SizeBudget:
    """The artifact size budget a run is held to: bytes, and who set it."""

    max_bytes: int
    user_set: bool  # --max_size (a failure exits 3) or the profile's default (a failure only warns)
    source: str  # "--max_size 10MB" or "profile browser-wasm"


@dataclass(frozen=True)
class SizeVerdict:
    """The artifact's size against the budget."""

    budget: SizeBudget
    size_bytes: int

    @property
    def met(self) -> bool:
        """Whether the artifact is within the budget."""
        return self.size_bytes <= self.budget.max_bytes

    def sentence(self) -> str:
        """``artifact 12.3 MB against the 10.0 MB budget: 23% over (--max_size 10MB)``."""
        return f"artifact {over_budget(self.size_bytes, self.budget.max_bytes)} ({self.budget.source})"


def size_budget(recipe: Recipe, profile: DeviceProfile, decisions: list[dict[str, str]]) -> SizeBudget | None:
    """Return the size budget of the run: ``--max_size``, else the profile's default
    (``constraints.max_size``), else None; a profile default adds a decision line saying so."""
    if recipe.max_size not in (None, ""):
        return SizeBudget(parse_size(recipe.max_size), True, f"--max_size {recipe.max_size}")
    default = profile.constraints.max_size_bytes
    if default is None:
        return None
    decisions.append(
        {
            "asked": "no --max_size",
            "done": f"size budget {format_size(default)} from profile {profile.name}",
            "why": f"profile {profile.name} sets a default size budget (constraints.max_size): its artifact is "
            "downloaded by a page; over it the run warns (pass --max_size to make it a gate)",
        }
    )
    return SizeBudget(default, False, f"profile {profile.name}")


def gate_budget(recipe: Recipe, scheme: str) -> float | None:
    """Return the accuracy budget (points) the run is held to: ``--max_accuracy_drop``, or for the
    auto search (without a saved plan) DEFAULT_BUDGET when none was given; None means no gate."""
    if scheme == "auto" and not recipe.precision_plan and recipe.max_accuracy_drop is None:
        return DEFAULT_BUDGET
    return recipe.max_accuracy_drop


def judge(
    fidelity: dict[str, Any],
    budget: float | None,
    search_section: dict[str, Any] | None,
    user_budget: float | None,
    size: SizeVerdict | None = None,
    routing: dict[str, Any] | None = None,
) -> Verdict:
    """Return the verdict on ``fidelity`` (verify's section) against ``budget`` and on the
    artifact's ``size`` against its size budget.

    ``user_budget`` is the ``--max_accuracy_drop`` the user set (None when not set). Like the
    accuracy budget, a size budget the user set (``--max_size``) fails the run when missed; the
    profile's default only warns (a note). With ``routing`` (the report's cascade section) the
    bundle serves the routed pair, so the gate judges the pair's drop on the eval data.
    """
    drop, metric = accuracy_drop(fidelity)
    if routing is not None:
        measured = routing["eval"]
        rule = "cascade by confidence" if routing.get("rule", "confidence") == "confidence" else "routing by size"
        metric = (
            f"{metric}, of the routed pair ({rule}, vs the large model) on the eval data; "
            f"the small model alone: {measured['drop_small_vs_large']:.3f}"
        )
        drop = float(measured["drop_vs_large"])
    # With a budget the user set, returning the float model because no quantized plan met it
    # fails the run (exit 3): they asked for a quantized artifact within that budget.
    budget_unmet = bool(search_section and search_section["float_fallback"] == "budget")
    passed = (budget is None or drop <= budget + 1e-9) and not (budget_unmet and user_budget is not None)
    size_failed = size is not None and not size.met and size.budget.user_set
    return Verdict(budget, drop, metric, passed and not size_failed, budget_unmet, size, passed)


def size_note(verdict: Verdict) -> str | None:
    """The report's note when the artifact missed a size budget that only warns (the profile's
    default); None otherwise (met, no budget, or a --max_size failure, which the gate reports)."""
    size = verdict.size
    if size is None or size.met or size.budget.user_set:
        return None
    return f"size budget missed (a warning: the profile's default, not --max_size): {size.sentence()}"


def raise_if_failed(verdict: Verdict, search_section: dict[str, Any] | None, bundle_dir: Path) -> None:
    """Raise GateFailed (exit 3) when the verdict failed, naming why and the kept ``bundle_dir``;
    return None when it passed."""
    if verdict.passed:
        return
    if verdict.accuracy_passed and verdict.size is not None and not verdict.size.met:
        raise GateFailed(
            f"size budget failed: {verdict.size.sentence()}",
            hint=(
                "no plan the search tried fits: a larger --max_size, or fewer weights (--prune channels:R, PyTorch)"
                if search_section
                else "a smaller scheme (int4-weight, int8-weight) or --quantization auto may fit"
            )
            + f"; the bundle is kept, marked failed, in {bundle_dir}",
            bundle_dir=str(bundle_dir),
        )
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
        hint=(f"size budget missed too: {verdict.size.sentence()}; " if verdict.size and not verdict.size.met else "")
        + f"the artifact is kept, marked failed, in {bundle_dir}",
        bundle_dir=str(bundle_dir),
    )
