"""A torch custom op with a non-tensor argument: exported as a custom-domain node carrying it as
an attribute, run by its Python kernel (PyOp receives the attribute) and checked against its
reference with the same attribute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeport import ops
from edgeport.ops.onnx import torch_translation_table
from edgeport.ops.ort import session_custom_ops
from edgeport.runtime.ort import OrtRunner
from edgeport.verify.custom_ops import node_attributes, parity


def _soft_threshold(x: np.ndarray, t: float) -> np.ndarray:
    return (np.sign(x) * np.maximum(np.abs(x) - t, 0)).astype(np.float32)


@pytest.fixture(scope="module")
def soft_threshold_op():
    """attrlib::soft_threshold(x, t: float), kept as attrlib::SoftThreshold with attribute t."""
    if not hasattr(torch.ops.attrlib, "soft_threshold"):

        @torch.library.custom_op("attrlib::soft_threshold", mutates_args=())
        def soft_threshold(x: torch.Tensor, t: float) -> torch.Tensor:
            return torch.sign(x) * torch.clamp(x.abs() - t, min=0)

        @soft_threshold.register_fake
        def _(x: torch.Tensor, t: float) -> torch.Tensor:
            return torch.empty_like(x)

    lowering = ops.CustomNode(op_type="SoftThreshold", python_kernel=lambda x, t: _soft_threshold(x, t),
                              attributes={"t": "float"})  # fmt: skip
    yield ops.register_op("attrlib::soft_threshold", onnx=lowering, reference=_soft_threshold)
    ops.unregister_op("attrlib::soft_threshold")


class _Model(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.attrlib.soft_threshold(x * 2, 0.25)


def test_the_argument_becomes_an_attribute_the_kernel_and_reference_receive(soft_threshold_op):
    program = torch.onnx.export(
        _Model().eval(), (torch.randn(2, 5),), dynamo=True, custom_translation_table=torch_translation_table(),
        opset_version=18, report=False, verbose=False,
    )  # fmt: skip
    model = program.model_proto
    node = next(n for n in model.graph.node if n.domain == "attrlib")
    assert node.op_type == "SoftThreshold"
    assert node_attributes(node) == {"t": pytest.approx(0.25)}
    libraries, transform = session_custom_ops()
    runner = OrtRunner(model.SerializeToString(), custom_op_libraries=libraries, custom_op_transform=transform)
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    produced = runner.run({runner.input_names[0]: x})[0]
    with torch.no_grad():
        expected = _Model()(torch.from_numpy(x)).numpy()
    assert np.abs(produced - expected).max() < 1e-6
    assert (produced == 0).sum() > 0  # the threshold is applied, not dropped
    figures = parity(soft_threshold_op, [x * 2], [produced], "test", node_attributes(node))
    assert figures["max_abs_diff"] < 1e-6 and figures["samples"] == 2
