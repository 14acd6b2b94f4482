"""The browser profiles (browser-wasm, browser-webgpu): the onnx section's backend and
web_backend, the default size budget, their validation, and what `edgeport profiles` shows."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import yaml
from click.testing import CliRunner
from onnx import TensorProto, helper

from edgeport.cli.main import main
from edgeport.core.errors import InputError
from edgeport.formats.onnx.backend import OnnxBackend
from edgeport.profiles import PROFILE_DIR, load_profile_file, resolve_profile


def _data(name: str) -> dict:
    return yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())


def _error(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(InputError) as info:
        load_profile_file(path)
    message = info.value.one_line()
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize(
    ("alias", "name", "web"), [("wasm", "browser-wasm", "wasm"), ("webgpu", "browser-webgpu", "webgpu")]
)
def test_aliases_resolve_and_expose_the_web_backend(alias, name, web):
    profile, how = resolve_profile(alias)
    assert profile.name == name and name in how
    assert profile.onnxruntime.backend == "web" and profile.onnxruntime.web_backend == web
    # ONNX Runtime in Python emulates the browser until the WebBackend lands.
    assert profile.onnxruntime.execution_providers == ("CPUExecutionProvider",)
    assert profile.constraints.max_size_bytes == 10_000_000
    assert set(profile.formats) == {"onnx"}
    assert set(profile.unsupported_formats) == {"tflite", "coreml"}
    assert profile.notes


def test_schemes_and_fallbacks_follow_the_backends():
    wasm, _ = resolve_profile("wasm")
    webgpu, _ = resolve_profile("webgpu")
    assert {"int8", "int8-dynamic", "int4-weight"} <= set(wasm.formats["onnx"].schemes)
    assert "fp16" in wasm.formats["onnx"].why_not  # no fp16 arithmetic in WebAssembly
    assert wasm.int8.activation_type == "uint8"  # MLAS's wasm int8 GEMM takes uint8 activations only
    assert set(webgpu.formats["onnx"].schemes) == {"none", "fp16", "int4-weight"}
    assert {"int8", "int8-dynamic"} <= set(webgpu.formats["onnx"].why_not)
    assert "fp16" in webgpu.formats["onnx"].float_compute
    assert webgpu.cost("matmul", "int4-weight") < webgpu.cost("matmul", "fp32")
    assert webgpu.cost("conv", "int8") is None


def test_other_profiles_keep_ort_and_no_size_budget():
    profile, _ = resolve_profile("x86-avx2")
    assert profile.onnxruntime.backend == "ort" and profile.onnxruntime.web_backend is None
    assert profile.constraints.max_size_bytes is None


def test_bad_backend_values_are_one_line_errors(tmp_path):
    data = _data("browser-wasm")
    data["formats"]["onnx"]["backend"] = "browser"
    assert "'formats.onnx.backend'" in (m := _error(tmp_path, data)) and "ort, web" in m
    data = _data("browser-wasm")
    data["formats"]["onnx"]["web_backend"] = "webgl"
    assert "'formats.onnx.web_backend'" in (m := _error(tmp_path, data)) and "wasm, webgpu" in m
    data = _data("browser-wasm")
    del data["formats"]["onnx"]["web_backend"]
    assert "'formats.onnx.web_backend'" in _error(tmp_path, data)
    data = _data("x86-avx2")
    data["formats"]["onnx"]["web_backend"] = "wasm"
    assert "applies only with backend: web" in _error(tmp_path, data)
    data = _data("x86-avx2")
    data["formats"]["tflite"]["backend"] = "web"  # only the onnx section has it
    assert "'formats.tflite.backend'" in _error(tmp_path, data)


@pytest.mark.parametrize("value", ["ten megabytes", "-5MB", 0, True, "10 XB"])
def test_bad_default_size_budget(tmp_path, value):
    data = _data("browser-wasm")
    data["constraints"]["max_size"] = value
    assert "'constraints.max_size'" in _error(tmp_path, data)


def test_size_budget_accepts_bytes_and_units(tmp_path):
    data = _data("x86-avx2")
    data["constraints"]["max_size"] = 1500000
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_profile_file(path).constraints.max_size_bytes == 1_500_000
    data["constraints"]["max_size"] = "2MiB"
    path.write_text(yaml.safe_dump(data))
    assert load_profile_file(path).constraints.max_size_bytes == 2 * 1024 * 1024


def test_cli_lists_and_shows_them():
    runner = CliRunner()
    listed = runner.invoke(main, ["profiles", "list"])
    assert listed.exit_code == 0 and "browser-wasm" in listed.output and "browser-webgpu" in listed.output
    shown = runner.invoke(main, ["profiles", "show", "wasm"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "backend web (wasm)" in shown.output and "default size budget: 10.0 MB" in shown.output
    assert "tflite" in shown.output and "not run" in shown.output


def test_onnx_op_check_runs_on_the_browser_profiles(tmp_path):
    """The ONNX backend's op check takes these profiles' providers; WebGPU flags the int8 ops it
    leaves to the wasm CPU EP, wasm flags none."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("z", TensorProto.UINT8, [], [128])
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="d"),
        helper.make_node("Relu", ["d"], ["y"], name="r"),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], [scale, zero]), opset_imports=[helper.make_opsetid("", 18)]
    )
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    flagged = {}
    for name in ("wasm", "webgpu"):
        profile, _ = resolve_profile(name)
        checked = OnnxBackend(profile, None, None, None).check_ops(path)
        flagged[name] = {f["op"]: f["count"] for f in checked["flagged"]}
    assert flagged["wasm"] == {}
    assert flagged["webgpu"] == {"QuantizeLinear": 1, "DequantizeLinear": 1}
