"""Device profiles: schema validation, shipped profiles, aliases, detection, resolution, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edgeport.cli.main import main
from edgeport.core.errors import InputError
from edgeport.profiles import (
    PROFILE_DIR,
    choose_profile,
    load_profile_file,
    op_class,
    resolve_profile,
    resolve_scheme,
    shipped_profiles,
)
from edgeport.profiles.schema import OP_CLASSES, SCHEMA_VERSION

SHIPPED = (
    "x86-avx512-vnni",
    "x86-avx2",
    "arm64-neon",
    "apple-metal",
    "apple-ane",
    "nvidia-tensorrt",
    "android-gpu",
    "npu-int8",
    "qualcomm-htp",
    "generic-cpu",
    "browser-wasm",
    "browser-webgpu",
)


def _base() -> dict:
    """Return the data of a valid shipped profile, to break one field at a time."""
    return yaml.safe_load((PROFILE_DIR / "x86-avx2.yaml").read_text())


def _write(tmp_path: Path, data: dict, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _error(tmp_path: Path, data: dict) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as info:
        load_profile_file(path)
    message = info.value.one_line()
    assert "\n" not in message and str(path) in message
    return message


# --- schema ---------------------------------------------------------------------------------------


def test_every_shipped_profile_loads_and_is_complete():
    profiles = shipped_profiles()
    assert set(profiles) == set(SHIPPED)
    for profile in profiles.values():
        assert profile.schema_version == SCHEMA_VERSION
        assert profile.formats and set(profile.op_classes) == set(OP_CLASSES)
        assert profile.onnxruntime.execution_providers
        data = profile.as_dict()
        assert data["name"] == profile.name and "formats" in data and "op_classes" in data


def test_unknown_field_names_file_field_and_allowed(tmp_path):
    data = _base()
    data["int8"]["signedness"] = "u8"
    message = _error(tmp_path, data)
    assert "'int8.signedness'" in message and "activation_type" in message


def test_unknown_top_level_field(tmp_path):
    data = _base()
    data["schemes"] = ["none"]  # v1 field: schemes now come from formats
    message = _error(tmp_path, data)
    assert "'schemes'" in message and "unknown field" in message and "formats" in message


def test_bad_enum_value(tmp_path):
    data = _base()
    data["formats"]["tflite"]["delegate"] = "hexagon"
    message = _error(tmp_path, data)
    assert "'formats.tflite.delegate'" in message and "xnnpack" in message and "gpu" in message


def test_bad_precision_in_op_classes(tmp_path):
    data = _base()
    data["op_classes"]["conv"]["bf16"] = 0.5
    message = _error(tmp_path, data)
    assert "'op_classes.conv.bf16'" in message and "int4-weight" in message


def test_wrong_type(tmp_path):
    data = _base()
    data["op_classes"]["conv"]["int8"] = "fast"
    assert "'op_classes.conv.int8'" in _error(tmp_path, data)
    data = _base()
    data["int8"]["per_channel"] = "yes"
    assert "'int8.per_channel'" in _error(tmp_path, data)
    data = _base()
    data["int4_weight"]["block_size"] = 48
    assert "'int4_weight.block_size'" in _error(tmp_path, data)


def test_bad_schema_version(tmp_path):
    data = _base()
    data["schema_version"] = 1
    message = _error(tmp_path, data)
    assert "'schema_version'" in message and f"reads {SCHEMA_VERSION}" in message


def test_missing_op_class_and_inconsistent_scheme(tmp_path):
    data = _base()
    del data["op_classes"]["pooling"]
    assert "'op_classes.pooling'" in _error(tmp_path, data)
    data = _base()
    data["op_classes"]["matmul"].pop("int4-weight")
    assert "'formats.onnx.schemes'" in _error(tmp_path, data)


def test_coreml_scheme_needs_deployment_target(tmp_path):
    data = yaml.safe_load((PROFILE_DIR / "apple-metal.yaml").read_text())
    data["formats"]["coreml"]["minimum_deployment_target"] = "macOS13"
    message = _error(tmp_path, data)
    assert "'formats.coreml.schemes'" in message and "int4-weight" in message


def test_full_integer_only_allows_int8_only(tmp_path):
    data = yaml.safe_load((PROFILE_DIR / "npu-int8.yaml").read_text())
    data["formats"]["tflite"]["schemes"] = ["int8", "fp16"]
    data["formats"]["tflite"]["why_not"].pop("fp16")
    data["op_classes"]["conv"]["fp16"] = 1.0
    assert "full_integer_only" in _error(tmp_path, data)


# --- names, aliases, user files --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "name"),
    [("metal", "apple-metal"), ("ane", "apple-ane"), ("cuda", "nvidia-tensorrt"), ("npu", "npu-int8")],
)
def test_aliases(alias, name):
    profile, why = resolve_profile(alias)
    assert profile.name == name and name in why


def test_auto_and_cpu_detect_the_host():
    for value in ("auto", "cpu"):
        profile, why = resolve_profile(value)
        assert profile.name in SHIPPED and "detected the host" in why


def test_unknown_profile_lists_known_names():
    with pytest.raises(InputError) as info:
        resolve_profile("tpu-v9")
    assert "metal" in info.value.one_line()


def test_user_profile_file(tmp_path):
    data = _base()
    data["name"] = "my-board"
    data["aliases"] = []
    path = _write(tmp_path, data, "board.yaml")
    profile, why = resolve_profile(str(path))
    assert profile.name == "my-board" and str(path) in why and profile.source == str(path)


# --- host detection ----------------------------------------------------------------------------------


def test_detection_from_flags():
    assert choose_profile("x86_64", "Linux", {"avx2", "avx512f", "avx512_vnni"})[0] == "x86-avx512-vnni"
    assert choose_profile("x86_64", "Linux", {"avx2", "avx_vnni"})[0] == "x86-avx512-vnni"
    assert choose_profile("AMD64", "Windows", {"avx2", "fma"})[0] == "x86-avx2"
    assert choose_profile("x86_64", "Linux", {"sse4_2"})[0] == "generic-cpu"
    assert choose_profile("aarch64", "Linux", {"fp", "asimd", "asimddp"})[0] == "arm64-neon"
    assert choose_profile("aarch64", "Linux", {"fp", "asimd"})[0] == "generic-cpu"
    name, reason = choose_profile("arm64", "Darwin", set())
    assert name == "arm64-neon" and "metal" in reason
    assert choose_profile("riscv64", "Linux", {"rv64imafdc"})[0] == "generic-cpu"
    assert choose_profile("", "Linux", set())[0] == "generic-cpu"


# --- op classes and costs ------------------------------------------------------------------------------


def test_op_class():
    assert op_class("Conv") == "conv"
    assert op_class("Conv", {"group": 32, "in_channels": 32}) == "depthwise_conv"
    assert op_class("Conv", {"group": 32, "weight_shape": [32, 1, 3, 3]}) == "depthwise_conv"
    assert op_class("Conv", {"group": 2, "in_channels": 64}) == "conv"
    assert op_class("ConvTranspose") == "conv"
    for op in ("MatMul", "Gemm", "MatMulNBits"):
        assert op_class(op) == "matmul"
    assert op_class("Attention") == "attention"
    for op in ("Add", "Mul", "Relu", "Clip", "Sigmoid"):
        assert op_class(op) == "elementwise"
    for op in ("LayerNormalization", "BatchNormalization"):
        assert op_class(op) == "norm"
    for op in ("MaxPool", "GlobalAveragePool"):
        assert op_class(op) == "pooling"
    assert op_class("Reshape") == "other" and op_class("SomethingNew") == "other"


def test_cost():
    vnni = shipped_profiles()["x86-avx512-vnni"]
    assert vnni.cost("matmul", "fp32") == 1.0 and vnni.cost("matmul", "none") == 1.0
    assert vnni.cost("matmul", "int8") < 0.5  # VNNI u8s8 GEMM, 3.75x fp32 (STACK.md)
    assert vnni.cost("norm", "int8") is None  # not native
    assert shipped_profiles()["apple-ane"].cost("conv", "fp32") is None
    with pytest.raises(ValueError):
        vnni.cost("lstm", "fp32")


# --- resolution ------------------------------------------------------------------------------------------


def test_int8_on_metal_tflite_becomes_weight_only_fp16():
    metal = resolve_profile("metal")[0]
    result = resolve_scheme(metal, "int8", "tflite")
    assert (result.scheme, result.compute) == ("int8-weight", "fp16")
    assert result.decision is not None
    assert result.decision["asked"] == "--quantization int8 for tflite"
    assert "int8-weight" in result.decision["done"] and "GPU delegate" in result.decision["why"]


def test_int8_on_metal_coreml_cites_neural_engine():
    result = resolve_scheme(resolve_profile("metal")[0], "int8", "coreml")
    assert result.scheme == "int8-weight" and "Neural Engine" in result.decision["why"]


def test_ane_resolutions():
    ane = resolve_profile("ane")[0]
    kept = resolve_scheme(ane, "int8", "coreml")
    assert (kept.scheme, kept.compute, kept.decision) == ("int8", "int8", None)
    fp32 = resolve_scheme(ane, "none", "coreml")
    assert fp32.scheme == "fp16" and "fp16 only" in fp32.decision["why"]
    int4 = resolve_scheme(ane, "int4-weight", "coreml")
    assert int4.scheme == "int8-weight" and "iOS18" in int4.decision["why"]


def test_x86_int8_onnx_is_kept():
    result = resolve_scheme(resolve_profile("x86-avx512-vnni")[0], "int8", "onnx")
    assert (result.scheme, result.compute, result.decision) == ("int8", "int8", None)


def test_fp16_on_npu_becomes_int8():
    npu = resolve_profile("npu")[0]
    for fmt in ("tflite", "onnx"):
        result = resolve_scheme(npu, "fp16", fmt)
        assert (result.scheme, result.compute) == ("int8", "int8")
        assert "full-integer" in result.decision["why"]


def test_kept_scheme_with_other_compute_is_a_decision():
    result = resolve_scheme(resolve_profile("android-gpu")[0], "none", "tflite")
    assert result.scheme == "none" and result.compute == "fp16" and result.decision is not None


def test_tensorrt_and_auto():
    trt = resolve_profile("cuda")[0]
    assert resolve_scheme(trt, "int8-dynamic", "onnx").scheme == "int8"
    assert resolve_scheme(trt, "int4-weight", "onnx").decision is None
    auto = resolve_scheme(trt, "auto", "onnx")
    assert (auto.scheme, auto.decision) == ("auto", None)


def test_format_not_run_is_input_error():
    with pytest.raises(InputError) as info:
        resolve_scheme(resolve_profile("x86-avx2")[0], "int8", "coreml")
    message = info.value.one_line()
    assert "does not run coreml" in message and "Apple" in message and "onnx" in message
    with pytest.raises(InputError):
        resolve_scheme(resolve_profile("android-gpu")[0], "fp16", "onnx")
    with pytest.raises(InputError):
        resolve_scheme(resolve_profile("x86-avx2")[0], "int3", "onnx")


# --- CLI ---------------------------------------------------------------------------------------------


def test_cli_profiles_list_show_detect():
    runner = CliRunner()
    listed = runner.invoke(main, ["profiles", "list"])
    assert listed.exit_code == 0
    for name in SHIPPED:
        assert name in listed.output
    assert "metal" in listed.output and "cuda" in listed.output
    shown = runner.invoke(main, ["profiles", "show", "ane"])
    assert shown.exit_code == 0
    assert "CPU_AND_NE" in shown.output and "cost conv" in shown.output and "reduce_range" in shown.output
    missing = runner.invoke(main, ["profiles", "show", "nope"])
    assert missing.exit_code == 2 and "unknown device profile" in missing.output
    detected = runner.invoke(main, ["profiles", "detect"])
    assert detected.exit_code == 0 and detected.output.split(":")[0] in SHIPPED
