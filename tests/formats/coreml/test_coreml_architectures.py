"""Core ML architecture coverage (issue #5): each architecture of tests/models_architectures.py
converts to an ML Program through one of edgeport's routes (torch.export, torch.export with
core-ATen decompositions, torch.jit.trace) and the saved package loads, or the conversion fails
with exit 4 naming the op. Plus one whole run with two inputs and two outputs."""

from __future__ import annotations

import numpy as np
import pytest

from edgeport.api import convert
from edgeport.core.errors import ConversionError
from edgeport.core.model import SourceModel, TensorSpec
from edgeport.formats.coreml.convert import convert_source
from edgeport.formats.coreml.inspect import inspect_package
from edgeport.formats.coreml.tools import quiet
from edgeport.profiles import resolve_profile
from tests.models_architectures import ARCHITECTURES

# The route each architecture converts through here (coremltools 9.0, torch 2.13): torch.export
# fails on LSTM/GRU ("Unsupported fx node lstm") until the core-ATen decompositions turn them
# into matmul loops, and on the U-Net's two-argument max_pool2d, which tracing converts.
EXPECTED_ROUTE = {
    "depthwise_cnn": "torch.export",
    "grouped_shuffle_cnn": "torch.export",
    "unet_decoder": "torch.jit.trace",
    "token_transformer": "torch.export",
    "vit_attention": "torch.export",
    "lstm_seq": "torch.export + core ATen decompositions",
    "gru_seq": "torch.export + core ATen decompositions",
    "two_in_two_out": "torch.export",
}


def _source(name: str) -> SourceModel:
    spec = ARCHITECTURES[name]
    inputs = [TensorSpec(n, list(shape), dtype) for n, (shape, dtype) in spec.inputs.items()]
    return SourceModel("pytorch", "factory", name, None, inputs, None, spec.factory())


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architecture_converts_or_names_the_op(name, tmp_path):
    spec = ARCHITECTURES[name]
    outputs = [f"out{i}" for i in range(spec.outputs)]
    target = resolve_profile("metal")[0].formats["coreml"]
    try:
        mlmodel, route, notes = convert_source(_source(name), outputs, 1, target, fp16=True)
    except ConversionError as exc:  # allowed, if it names the op and exits 4
        assert exc.exit_code == 4 and "cannot convert op '" in exc.message, exc.message
        pytest.fail(f"{name} no longer converts: {exc.message}")  # today every one converts
    assert route == EXPECTED_ROUTE[name], notes
    if route != "torch.export":
        assert any("failed" in note and route in note for note in notes)  # the report says which worked
    path = tmp_path / f"{name}.mlpackage"
    with quiet():
        mlmodel.save(str(path))
    structure = inspect_package(path)
    assert [i["name"] for i in structure["inputs"]] == list(spec.inputs)  # named as in the source
    assert [o["name"] for o in structure["outputs"]] == outputs
    int_inputs = [i for i in structure["inputs"] if np.dtype(spec.inputs[i["name"]][1]).kind in "iu"]
    assert all(i["dtype"] == "INT32" for i in int_inputs)  # Core ML has no int64: token ids become int32
    assert structure["weights"], "no weighted op found"
    assert structure["compute_dtypes"].get("FLOAT16", 0) > 0


def test_two_inputs_two_outputs_end_to_end(tmp_path):
    """A whole run: both outputs compared (emulated), both inputs named, palettize-6 applied."""
    model = "tests/models_architectures.py:make_two_in_two_out"
    result = convert(
        model,
        output_format="coreml",
        quantization="palettize-6",
        optimize_for="metal",
        input_shape=["image:1,3,16,16", "vector:1,6"],
        output_dir=str(tmp_path / "bundle"),
        eval_samples=64,
    )
    report = result.report
    assert len(report["fidelity"]["outputs"]) == 2 and report["fidelity"]["emulated"]
    for output in report["fidelity"]["outputs"].values():
        assert output["cosine_mean"] > 0.999
    structure = report["artifact_structure"]
    assert [i["name"] for i in structure["inputs"]] == ["image", "vector"]
    assert [o["name"] for o in structure["outputs"]] == [o["name"] for o in report["model"]["outputs"]]
    applied = report["precision_plan"]["applied"]
    assert applied and set(applied.values()) == {"palettize-6"}
    assert all(w["dtype"] == "UINT6" for w in structure["weights"])
