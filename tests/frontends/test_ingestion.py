"""Every ingestion form converts, with a parity check against the source framework."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeport.api import convert
from edgeport.core.errors import InputError
from tests import models_for_tests
from tests.conftest import MODELS_FILE, factory


def _convert(input_model, tmp_path: Path, data: Path | None, **options):
    return convert(
        str(input_model),
        quantization=options.pop("quantization", "none"),
        optimize_for="cpu",
        eval_data=str(data) if data else None,
        output_dir=str(tmp_path / "bundle"),
        latency_runs=5,
        warmup_runs=2,
        **options,
    )


def _assert_matches_tiny(result) -> None:
    """The artifact equals TinyNet's eager outputs on the bundle's reference inputs."""
    reference = np.load(result.bundle_dir / "reference.npz")
    x = reference["inputs/x"]
    session = ort.InferenceSession(str(result.artifact), providers=["CPUExecutionProvider"])
    expected = models_for_tests.make_tiny()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-4, atol=1e-5)
    assert result.report["model"]["parity"]["ok"]


@pytest.mark.parametrize(
    ("form", "options"),
    [
        ("pt2", {}),
        ("torchscript", {"input_shape": "1,3,16,16", "dynamic_batch": True}),
        ("state_dict", {"input_shape": "x:1,3,16,16", "dynamic_batch": True, "model_class": f"{MODELS_FILE}:TinyNet"}),
        ("pickle", {"input_shape": "1,3,16,16", "dynamic_batch": True, "allow_pickle": True}),
        ("onnx", {}),
        ("onnx_external", {}),
    ],
)
def test_file_forms(form, options, tiny_files, tmp_path):
    result = _convert(tiny_files[form], tmp_path, tiny_files["data"], **options)
    expected_form = {"pt2": "exported_program", "onnx_external": "onnx"}.get(form, form)
    assert result.report["model"]["form"] == expected_form
    assert result.report["model"]["inputs"][0]["shape"][0] == "batch"
    _assert_matches_tiny(result)
    assert result.report["fidelity"]["samples"] == 48


def test_torchscript_falls_back_to_the_torchscript_exporter_and_says_so(tiny_files, tmp_path):
    result = _convert(
        tiny_files["torchscript"], tmp_path, tiny_files["data"], input_shape="1,3,16,16", dynamic_batch=True
    )
    exporter = result.report["model"]["exporter"]
    if exporter.endswith("dynamo=False)"):
        assert any("dynamo exporter failed" in note for note in result.report["notes"])
    else:
        assert exporter.endswith("dynamo=True)")


def test_factory_with_static_shape(tmp_path):
    result = _convert(factory("make_tiny"), tmp_path, None, input_shape="1,3,16,16")
    assert result.report["model"]["form"] == "factory"
    assert result.report["model"]["inputs"][0]["shape"] == [1, 3, 16, 16]
    assert result.report["data"]["eval"]["synthetic"]
    assert any("random inputs" in note for note in result.report["notes"])
    _assert_matches_tiny(result)


def test_factory_int8_with_synthetic_calibration(tmp_path):
    result = _convert(factory("make_tiny"), tmp_path, None, input_shape="1,3,16,16", quantization="int8")
    assert any("random inputs" in d["done"] for d in result.report["decisions"])
    assert next(iter(result.report["fidelity"]["outputs"].values()))["cosine_mean"] > 0.98


def test_two_inputs_named_shapes_and_dtype(tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "two.npz"
    np.savez(
        data,
        left=rng.standard_normal((10, 6)).astype(np.float32),
        right=rng.standard_normal((10, 3)).astype(np.float32),
    )
    result = _convert(
        factory("make_two_input"),
        tmp_path,
        data,
        input_shape=["left:1,6", "right:1,3"],
        input_dtype="float32",
        dynamic_batch=True,
    )
    inputs = {i["name"]: i for i in result.report["model"]["inputs"]}
    assert inputs["left"]["shape"] == ["batch", 6] and inputs["right"]["shape"] == ["batch", 3]
    assert len(result.report["model"]["outputs"]) == 2
    model = onnx.load(str(result.artifact))
    assert [i.name for i in model.graph.input] == ["left", "right"]


def test_state_dict_without_model_class_is_refused(tiny_files, tmp_path):
    with pytest.raises(InputError, match="--model_class"):
        _convert(tiny_files["state_dict"], tmp_path, None, input_shape="1,3,16,16")
    assert not (tmp_path / "bundle").exists()


def test_state_dict_with_wrong_class_is_refused(tiny_files, tmp_path):
    with pytest.raises(InputError, match="does not fit"):
        _convert(
            tiny_files["state_dict"], tmp_path, None, input_shape="1,3,16,16", model_class=f"{MODELS_FILE}:FeatureNet"
        )


def test_module_without_input_shape_is_refused(tmp_path):
    with pytest.raises(InputError, match="--input_shape is required"):
        _convert(factory("make_tiny"), tmp_path, None)
