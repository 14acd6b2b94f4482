"""Float islands: the Q/DQ boundaries around a kept custom node, and their charge to the
search's estimated cost of a quantized plan (not of the all-float plan)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport import ops
from edgeport.core.plan import LayerPrecision, PrecisionPlan
from edgeport.quantize.islands import boundary_macs, island_boundaries
from edgeport.quantize.search import estimated_cost
from edgeport.quantize.sensitivity import LayerSensitivity


@pytest.fixture
def island_model():
    """x[1,16] -> Gemm(16->32) -> islandlib::Norm -> Gemm(32->4), the custom node registered kept."""
    ops.register_op("islandlib::Norm", onnx=ops.CustomNode(python_kernel=lambda x: x))
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
               for n, s in (("w1", (32, 16)), ("w2", (4, 32)))]  # fmt: skip
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
            helper.make_node("Norm", ["h"], ["n"], name="norm", domain="islandlib"),
            helper.make_node("Gemm", ["n", "w2"], ["y"], name="fc2", transB=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        weights,
        value_info=[helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 32]) for n in ("h", "n")],
    )
    yield helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("islandlib", 1)])
    ops.unregister_op("islandlib::Norm")


def test_boundaries_around_a_kept_node(island_model):
    assert island_boundaries(island_model) == [
        {"tensor": "h", "node": "norm", "direction": "in", "elements": 32},
        {"tensor": "n", "node": "norm", "direction": "out", "elements": 32},
    ]
    assert boundary_macs(island_model) == 64


def test_an_int8_op_is_no_island(island_model):
    ops.register_op("islandlib::Norm", onnx=ops.CustomNode(python_kernel=lambda x: x), int8=True)
    assert island_boundaries(island_model) == []


def test_boundaries_are_charged_to_quantized_plans_only():
    sensitivity = {
        n: LayerSensitivity(layer=n, op="Gemm", macs=m, sqnr_db=30.0) for n, m in (("fc1", 512), ("fc2", 128))
    }
    cost = {"fp32": 1.0, "int8": 0.25}

    def per_mac(layer: str, precision: str) -> float:
        return cost[precision]

    def plan(precision: str) -> PrecisionPlan:
        layers = {n: LayerPrecision(precision=precision, op="Gemm", nodes=[n]) for n in sensitivity}
        return PrecisionPlan(scheme="int8", profile="p", details={}, layers=layers)

    assert estimated_cost(plan("fp32"), sensitivity, per_mac, boundary_macs=64) == 1.0
    plain = estimated_cost(plan("int8"), sensitivity, per_mac)
    assert plain == pytest.approx(0.25)
    assert estimated_cost(plan("int8"), sensitivity, per_mac, boundary_macs=64) == pytest.approx(0.25 + 64 / 640)
