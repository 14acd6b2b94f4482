"""Unit tests of the pipeline's small steps that need no model: the gate's budget and verdict, the
GateFailed messages, the order of the report's notes, and the target's default output folder."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeport.core.errors import GateFailed
from edgeport.pipeline.gate import Verdict, gate_budget, judge, raise_if_failed
from edgeport.pipeline.report import collect_notes
from edgeport.pipeline.target import default_output_dir, model_display_name
from edgeport.quantize.auto import DEFAULT_BUDGET


def _recipe(**fields):
    base = {"precision_plan": None, "max_accuracy_drop": None, "input_model": "pkg.models:tiny_cnn"}
    return SimpleNamespace(**{**base, **fields})


def _fidelity(drop: float) -> dict:
    return {"reference_top1": 90.0, "artifact_top1": 90.0 - drop}


def test_gate_budget_is_the_users_or_the_auto_default():
    assert gate_budget(_recipe(max_accuracy_drop=0.5), "int8") == 0.5
    assert gate_budget(_recipe(), "int8") is None  # no gate
    assert gate_budget(_recipe(), "auto") == DEFAULT_BUDGET
    assert gate_budget(_recipe(max_accuracy_drop=2.0), "auto") == 2.0
    assert gate_budget(_recipe(precision_plan="plan.json"), "auto") is None  # a saved plan: no search


def test_judge_passes_within_the_budget_and_fails_over_it():
    verdict = judge(_fidelity(0.4), 0.5, None, 0.5)
    assert (verdict.budget, verdict.passed, verdict.budget_unmet) == (0.5, True, False)
    assert verdict.drop == pytest.approx(0.4) and verdict.metric == "top-1 accuracy drop vs fp32 (labels)"
    assert not judge(_fidelity(0.6), 0.5, None, 0.5).passed
    assert judge(_fidelity(50.0), None, None, None).passed  # no budget, no gate


def test_float_fallback_fails_only_a_budget_the_user_set():
    search = {"float_fallback": "budget", "float_fallback_why": "none met it", "blocking_layers": []}
    assert not judge(_fidelity(0.0), 0.5, search, 0.5).passed  # asked for a quantized artifact within 0.5
    assert judge(_fidelity(0.0), DEFAULT_BUDGET, search, None).passed  # auto's default budget: float is fine


def test_raise_if_failed_names_the_cause_and_the_kept_bundle(tmp_path):
    raise_if_failed(Verdict(0.5, 0.1, "m", True, False), None, tmp_path)  # passed: nothing raised
    search = {"float_fallback": "budget", "float_fallback_why": "none met it", "blocking_layers": ["conv1"]}
    with pytest.raises(GateFailed, match="no quantized plan met --max_accuracy_drop 0.5") as unmet:
        raise_if_failed(Verdict(0.5, 0.0, "m", False, True), search, tmp_path)
    assert unmet.value.bundle_dir == str(tmp_path)
    with pytest.raises(GateFailed, match=r"m is 0\.700 points, over the budget of 0\.5; layers that block it: conv1"):
        raise_if_failed(Verdict(0.5, 0.7, "m", False, False), search, tmp_path)


def test_notes_keep_the_order_the_steps_found_them():
    bundle = SimpleNamespace(notes=["normalized"])
    artifact = SimpleNamespace(notes=["built"], facts={"not_expressible": {"conv1": "no int4"}})
    built = SimpleNamespace(artifact=artifact)
    measured = SimpleNamespace(
        op_check={"flagged": [{"count": 2, "op": "Erf", "why": "CPU fallback"}]},
        verified={"latency": {"speedup": 0.8}},
    )
    notes = collect_notes(bundle, built, measured, "int8", synthetic_eval=True)
    assert notes[:4] == [
        "normalized",
        "built",
        "plan not followed for conv1: no int4",
        "op check: 2 x Erf: CPU fallback",
    ]
    assert notes[4].startswith("the int8 artifact ran at 0.80x the speed of fp32")
    assert notes[5].startswith("fidelity was measured on random inputs")
    assert len(collect_notes(bundle, built, measured, "auto", synthetic_eval=False)) == 4  # auto chose it: no note


def test_default_output_dir_names_model_format_scheme_and_profile(tmp_path):
    model = tmp_path / "net.onnx"
    model.write_bytes(b"")
    profile = SimpleNamespace(name="cpu-x")
    recipe = SimpleNamespace(input_model=str(model), output_format="onnx", quantization="none")
    assert default_output_dir(recipe, profile) == Path("out") / "net-onnx-fp32-cpu-x"
    assert model_display_name("pkg.models:tiny_cnn") == "tiny_cnn"
