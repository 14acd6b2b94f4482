"""The search for a cut that fits: try the requested one, then smaller ones (the target
scaled down, see :func:`edgeport.prune.budget.next_factor`), until the pruned model's drop
is within pruning's part of the accuracy budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeport.options.prune_spec import PruneSpec
from edgeport.prune import budget as budget_mod
from edgeport.prune.context import PruneContext

# When the pruned model misses its part of the budget: retry with the target scaled down (see
# edgeport.prune.budget.next_factor), at most this many tries in all. A structured try may
# include recovery (minutes), so it gets few, large steps; a magnitude try is one evaluation.
ATTEMPTS = {"channels": (4, 0.3), "magnitude": (8, 0.6)}  # (tries, smallest step factor)


def search_cut(
    ctx: PruneContext,
    spec: PruneSpec,
    allocate_at: Callable[[float], dict[str, float]],
    attempt: Callable[[dict[str, float]], tuple[dict[str, Any], Any]],
) -> tuple[list[dict[str, Any]], Any]:
    """Try the requested cut, then smaller ones, until one fits pruning's part of the budget.

    ``allocate_at(factor)`` gives per-layer ratios for the target scaled by ``factor``;
    ``attempt(ratios)`` prunes (and recovers) and returns (record with "drop", payload).
    Returns every attempt's record and the payload of the one that fits (None if none did).
    """
    attempts: list[dict[str, Any]] = []
    tried: list[dict[str, float]] = []
    factor = 1.0
    max_attempts, floor = ATTEMPTS[spec.method]
    while len(attempts) < max_attempts and factor > 0.02:
        ratios = allocate_at(factor)
        if not any(ratios.values()):
            break  # scaled down to nothing: the unpruned model is the answer
        if ratios in tried:  # the ladders are coarse: a slightly smaller target can give the same cut
            factor *= 0.85
            continue
        tried.append(ratios)
        record, payload = attempt(ratios)
        target = spec.ratio * factor if spec.ratio is not None else None
        attempts.append({"factor": round(factor, 4), "target": target, **record})
        if ctx.fits(record["drop"]):
            return attempts, payload
        factor = budget_mod.next_factor(factor, record["drop"], ctx.budget or 0.0, floor)
    return attempts, None
