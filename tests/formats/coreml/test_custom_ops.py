"""Custom operators on the Core ML route (issue 20): a composite op through coremltools'
register_torch_op (registered only during the conversion), a torch decomposition, the op's own
implementation, and the one-line refusals. Real coremltools conversions; the packages are saved
and read back (Core ML cannot predict on Linux, so the MIL program and the spec are inspected)."""

from __future__ import annotations

import pytest
import torch

from edgeport.core.errors import ConversionError, InputError
from edgeport.core.model import SourceModel, TensorSpec
from edgeport.formats.coreml.convert import convert_source
from edgeport.formats.coreml.inspect import inspect_package
from edgeport.formats.coreml.tools import import_coremltools
from edgeport.ops import CoreMLComposite, Decompose, TorchDecompose, register_op, unregister_op
from edgeport.profiles import resolve_profile

OP = "edgeport_cmtest::gated"


@torch.library.custom_op(OP, mutates_args=())
def gated(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(g): a fused gate written as one torch custom op."""
    return x * torch.sigmoid(g)


@gated.register_fake
def _(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Gated(torch.nn.Module):
    """Linear -> the custom gate on its two halves -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inner = torch.nn.Linear(8, 16)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.inner(x).chunk(2, -1)
        return self.head(torch.ops.edgeport_cmtest.gated(a, b))


def _composite(context, node):
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs

    x, g = _get_inputs(context, node, expected=2)
    context.add(mb.mul(x=x, y=mb.sigmoid(x=g, name=f"{node.name}_gate"), name=node.name))


@pytest.fixture
def source():
    model = Gated().eval()
    specs = [TensorSpec("x", [1, 8], "float32")]
    yield SourceModel("pytorch", "factory", "gated", None, specs, None, model)
    unregister_op(OP)


def _convert(source):
    target = resolve_profile("metal")[0].formats["coreml"]
    return convert_source(source, ["out"], 1, target, fp16=False)


def _mil_ops(mlmodel) -> list[tuple[str, str]]:
    return [(op.op_type, op.outputs[0].name) for op in mlmodel._mil_program.functions["main"].operations]


def test_composite_is_in_the_program_and_unregistered_after(source, tmp_path):
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    register_op(OP, coreml=CoreMLComposite(_composite))
    mlmodel, route, notes = _convert(source)
    ops = _mil_ops(mlmodel)
    assert route == "torch.export"
    # the composite's ops, named after the fx node of the custom op
    assert ("sigmoid", "gated_gate") in ops and ("mul", "gated") in ops
    assert any("composite" in n and OP in n for n in notes)
    assert OP not in _TORCH_OPS_REGISTRY.name_to_func_mapping  # nothing leaks to the next conversion
    mlmodel.save(str(tmp_path / "m.mlpackage"))
    structure = inspect_package(tmp_path / "m.mlpackage")
    assert [o["name"] for o in structure["outputs"]] == ["out"]
    blocks = mlmodel.get_spec().mlProgram.functions["main"].block_specializations.values()
    spec_ops = [op.type for block in blocks for op in block.operations]
    assert spec_ops.count("linear") == 2 and "sigmoid" in spec_ops and "mul" in spec_ops


@pytest.mark.parametrize("lowering", ["torch", "own"])
def test_decompositions_reach_core_ml_as_standard_ops(source, lowering):
    entry = TorchDecompose(lambda x, g: x * torch.sigmoid(g)) if lowering == "torch" else Decompose()
    register_op(OP, coreml=entry)
    mlmodel, route, notes = _convert(source)
    types = [t for t, _ in _mil_ops(mlmodel)]
    assert route == "torch.export" and "sigmoid" in types and "mul" in types
    assert any(OP in n and ("TorchDecompose" in n or "own torch" in n) for n in notes)
    # Core ML cannot predict on Linux: the program is checked to hold the decomposition's ops
    # and the model's own weights
    import numpy as np

    weights = [op for op in mlmodel._mil_program.functions["main"].operations if op.op_type == "const"]
    inner = source.live_model.inner.weight.detach().numpy()
    assert any(w.outputs[0].val is not None and np.array_equal(np.asarray(w.outputs[0].val), inner) for w in weights)


def test_unregistered_or_unlowered_op_is_one_line(source):
    with pytest.raises(ConversionError, match=f"custom op {OP} is not registered"):
        _convert(source)
    register_op(OP)  # registered, but with no Core ML lowering
    with pytest.raises(ConversionError, match=f"custom op {OP} has no Core ML lowering") as info:
        _convert(source)
    assert "CoreMLComposite" in info.value.hint


def test_onnx_source_is_refused_as_before():
    import_coremltools()
    onnx_source = SourceModel("onnx", "onnx", "m.onnx", None, [TensorSpec("x", [1, 8], "float32")])
    with pytest.raises(InputError, match="no ONNX frontend"):
        _convert(onnx_source)


def test_example_torch_model_converts_with_both_custom_ops(custom_op_models, tmp_path):
    """examples/custom_ops: mylib::rms_norm as a MIL composite, mylib::fused_gated_gelu inlined
    from its own torch implementation; the package read back from disk holds their ops."""
    from edgeport import convert
    from tests.conftest import EXAMPLES

    result = convert(
        str(custom_op_models["pt2"]), output_format="coreml", quantization="int8-weight", optimize_for="metal",
        output_dir=str(tmp_path / "bundle"), custom_ops=str(EXAMPLES / "custom_ops" / "ops.py"),
        calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
        eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz"),
    )  # fmt: skip
    report = result.report
    structure = inspect_package(result.artifact)
    assert structure["loads"]
    ops = structure["ops"]
    # the composite's reduce_mean + rsqrt, the decomposition's gelu + sigmoid, the three int8 linears
    assert ops["reduce_mean"] == 1 and ops["rsqrt"] == 1 and ops["gelu"] == 1 and ops["sigmoid"] == 1
    assert ops["constexpr_blockwise_shift_scale"] == 3 and ops["linear"] == 3
    notes = "\n".join(report["notes"])
    assert "mylib::rms_norm lowered to Core ML as a composite" in notes
    assert "mylib::fused_gated_gelu lowered to Core ML as its own torch implementation" in notes
    fidelity = report["fidelity"]
    assert fidelity["emulated"] and report["latency"]["not_run"]  # Core ML does not run on Linux
    assert fidelity["top1_agreement"] >= 97 and fidelity["reference_top1"] - fidelity["artifact_top1"] <= 1.0


def test_example_onnx_source_is_refused_for_core_ml(custom_op_models, tmp_path):
    from edgeport import convert
    from tests.conftest import EXAMPLES

    with pytest.raises(InputError, match="no ONNX frontend"):
        convert(
            str(custom_op_models["rmsnorm_node"]), output_format="coreml", optimize_for="metal",
            output_dir=str(tmp_path / "bundle"), custom_ops=str(EXAMPLES / "custom_ops" / "ops.py"),
        )  # fmt: skip
