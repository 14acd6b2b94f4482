"""Unit tests of the precision plan: the data every backend obeys."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport.core.errors import InputError
from edgeport.core.plan import check_plan_format, load_plan, uniform_plan
from edgeport.profiles import resolve_profile


def _model(width: int = 8, layers: int = 3) -> onnx.ModelProto:
    """x -> (MatMul -> Relu) x layers: three weighted layers named layer0..layer2."""
    rng = np.random.default_rng(0)
    nodes, inits, previous = [], [], "x"
    for i in range(layers):
        weight = numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), f"w{i}")
        inits.append(weight)
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"], name=f"layer{i}"))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}"))
        previous = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, width])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.fixture(scope="module")
def profile():
    return resolve_profile("x86-avx2")[0]


def test_uniform_plan_gives_every_weighted_layer_the_scheme(profile):
    plan = uniform_plan(_model(), "int8", profile)
    assert {name: layer.precision for name, layer in plan.layers.items()} == {f"layer{i}": "int8" for i in range(3)}
    assert plan.nodes_in("int8") == ["layer0", "layer1", "layer2"] and plan.nodes_not_in("int8") == []
    assert plan.details["format"] == "QDQ" and plan.profile == "x86-avx2"


def test_a_saved_plan_reapplies_with_its_choices(profile, tmp_path):
    model = _model()
    plan = uniform_plan(model, "int8", profile)
    plan.layers["layer1"].precision = "fp32"
    plan.save(tmp_path / "plan.json")
    again = load_plan(tmp_path / "plan.json", model, "onnx")
    assert {n: layer.precision for n, layer in again.layers.items()} == {
        "layer0": "int8",
        "layer1": "fp32",
        "layer2": "int8",
    }
    assert again.details == plan.details


def test_a_plan_for_another_model_or_with_unknown_precision_is_refused(profile, tmp_path):
    uniform_plan(_model(layers=4), "int8", profile).save(tmp_path / "plan.json")
    with pytest.raises(InputError, match="layers not in this model: layer3"):
        load_plan(tmp_path / "plan.json", _model(layers=3))
    data = json.loads((tmp_path / "plan.json").read_text())
    data["layers"]["layer0"]["precision"] = "int3"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="layers.layer0.precision: 'int3' is not one of"):
        load_plan(tmp_path / "bad.json", _model(layers=4))


def test_palettization_is_expressible_in_core_ml_only(profile):
    plan = uniform_plan(_model(), "int8-weight", profile)
    plan.layers["layer2"].precision = "palettize-4"
    check_plan_format(plan, "coreml")
    expected = r"palettize-4 \(layers layer2\) is expressible only in --output_format coreml"
    with pytest.raises(InputError, match=expected):
        check_plan_format(plan, "tflite")
