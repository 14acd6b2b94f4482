"""Fuzzing device profile YAML through resolution: every shipped profile as a seed, values
replaced, bytes mutated, other kinds of file; then the scheme of every format and quantization
resolved and the profile table drawn. Only success or an EdgeportError with exit 2, 3 or 4 are
allowed (tests/fuzz_files.py; tests/frontends/test_fuzz.py fuzzes the loader alone)."""

from __future__ import annotations

from tests import fuzz_files


def test_profile_files_resolve_or_are_refused():
    outcomes: list[str] = []
    fuzz_files.fuzz_profiles(outcomes.append, 200)
    assert outcomes, "no case ran"
    assert [o for o in outcomes if o.startswith("internal")] == []
    assert any(o == "exit 2" for o in outcomes)  # broken files are refused, not merely survived
