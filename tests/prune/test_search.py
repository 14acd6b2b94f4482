"""Unit tests of the prune stage's search for a cut that fits the budget (edgeport.prune.search),
with a stand-in context and a synthetic drop: no model is pruned."""

from __future__ import annotations

from types import SimpleNamespace

from edgeport.options.prune_spec import PruneSpec
from edgeport.prune.search import ATTEMPTS, search_cut


def _ctx(budget: float | None) -> SimpleNamespace:
    """The two things the search reads of a PruneContext: the budget and whether a drop fits it."""
    return SimpleNamespace(budget=budget, fits=lambda drop: budget is None or drop <= budget + 1e-9)


def _run(spec: PruneSpec, budget: float | None, drop_per_ratio: float, snap: float = 0.0):
    """Search with one layer whose drop grows linearly with its ratio; ``snap`` rounds ratios down
    to a ladder step (coarse ladders repeat cuts). Returns the attempts, the chosen ratios and
    every ratio tried."""
    tried: list[float] = []

    def allocate_at(factor: float) -> dict[str, float]:
        ratio = spec.ratio * factor
        return {"layer": ratio - ratio % snap if snap else ratio}

    def attempt(ratios: dict[str, float]) -> tuple[dict, dict[str, float]]:
        tried.append(ratios["layer"])
        return {"drop": ratios["layer"] * drop_per_ratio}, ratios

    attempts, chosen = search_cut(_ctx(budget), spec, allocate_at, attempt)
    return attempts, chosen, tried


def test_the_requested_cut_is_taken_when_it_fits():
    attempts, chosen, _ = _run(PruneSpec("magnitude", 0.5), budget=1.0, drop_per_ratio=1.0)
    assert chosen == {"layer": 0.5}
    assert attempts == [{"factor": 1.0, "target": 0.5, "drop": 0.5}]


def test_a_cut_over_the_budget_is_retried_smaller_until_it_fits():
    attempts, chosen, tried = _run(PruneSpec("magnitude", 0.8), budget=1.0, drop_per_ratio=4.0)
    assert tried == sorted(tried, reverse=True) and len(tried) > 1
    assert chosen is not None and chosen["layer"] * 4.0 <= 1.0
    assert [a["drop"] <= 1.0 for a in attempts] == [False] * (len(attempts) - 1) + [True]


def test_no_cut_fits_within_the_method_s_tries():
    attempts, chosen, _ = _run(PruneSpec("channels", 0.5), budget=0.0, drop_per_ratio=1.0)
    assert chosen is None and len(attempts) == ATTEMPTS["channels"][0]


def test_a_cut_the_ladder_repeats_is_tried_once():
    _, _, tried = _run(PruneSpec("magnitude", 0.5), budget=0.01, drop_per_ratio=1.0, snap=0.25)
    assert len(tried) == len(set(tried))


def test_without_a_budget_the_first_cut_is_taken():
    attempts, chosen, _ = _run(PruneSpec("magnitude", 0.9), budget=None, drop_per_ratio=100.0)
    assert chosen == {"layer": 0.9} and len(attempts) == 1
