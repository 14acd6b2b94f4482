"""Fuzzing ``precision_plan.json`` (--precision_plan): values replaced anywhere in a valid plan,
bytes mutated, other kinds of file; loaded against the model for every output format. Only
success or an EdgeportError with exit 2, 3 or 4 are allowed (tests/fuzz_files.py)."""

from __future__ import annotations

from tests import fuzz_files


def test_precision_plans_load_or_are_refused():
    outcomes: list[str] = []
    fuzz_files.fuzz_plans(outcomes.append, 400)
    assert outcomes, "no case ran"
    assert [o for o in outcomes if o.startswith("internal")] == []
    assert any(o == "exit 2" for o in outcomes)  # broken files are refused, not merely survived
