"""TFLite backend: onnx2tf in a child process, every precision, mixed plans, LiteRT runner.

The bundled Fashion-MNIST CNN is converted once per precision (module fixture); each
.tflite is run in LiteRT on 300 real test images and compared with the fp32 ONNX model.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeport
from edgeport.core.errors import ConversionError
from edgeport.core.hashing import sha256_file
from edgeport.core.plan import uniform_plan
from edgeport.data import load_dataset, parse_preprocess
from edgeport.formats.tflite.artifact import TFLiteExport
from edgeport.formats.tflite.export import export_tflite
from edgeport.formats.tflite.modes import expected_deviations as _expected
from edgeport.frontends.onnx import graph_input_specs
from edgeport.profiles import resolve_profile
from edgeport.runtime.litert import LiteRTRunner
from tests.conftest import EXAMPLES

# Unreachable proxies: a download attempt cannot leave the machine, and the child's socket
# guard logs it (network_attempts.log), which the tests below look for.
NO_NETWORK = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
}
MIXED_LAYER = "features.1"  # a 3x3x32x64 conv kept fp32 in the mixed plan
SAMPLES = 300


@pytest.fixture(scope="module")
def no_network():
    saved = {k: os.environ.get(k) for k in NO_NETWORK}
    os.environ.update(NO_NETWORK)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """The example's normalized fp32 ONNX, its sha256, a profile, calibration and test data."""
    root = tmp_path_factory.mktemp("tflite")
    result = edgeport.convert(str(EXAMPLES / "fashion_cnn.pt2"), quantization="none", output_dir=str(root / "bundle"))
    onnx_path = result.bundle_dir / "baseline_fp32.onnx"
    model = onnx.load(str(onnx_path))
    specs = graph_input_specs(model)
    profile, _ = resolve_profile("cpu")
    calibration = load_dataset(str(EXAMPLES / "fashion_mnist_calib.npz"), specs, 128, parse_preprocess(None))
    test = load_dataset(str(EXAMPLES / "fashion_mnist_test_1k.npz"), specs, SAMPLES, parse_preprocess(None))
    feeds = test.batch(0, SAMPLES)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    reference = session.run(None, feeds)[0]
    return {
        "root": root,
        "onnx": onnx_path,
        "sha256": sha256_file(onnx_path),
        "model": model,
        "profile": profile,
        "calibration": calibration,
        "feeds": feeds,
        "labels": test.labels,
        "reference": reference,
    }


@pytest.fixture(scope="module")
def exports(fashion, no_network) -> dict[str, TFLiteExport]:
    """One .tflite per configuration, converted once for the module."""
    configs = {
        "fp32": ("none", "float32", None),
        "fp16": ("fp16", "float32", None),
        "int8-dynamic": ("int8-dynamic", "float32", None),
        "int8": ("int8", "float32", None),
        "int8-io": ("int8", "int8", None),
        "mixed": ("int8", "float32", MIXED_LAYER),
    }
    work = fashion["root"] / "work"
    result = {}
    for key, (scheme, io_dtype, float_layer) in configs.items():
        plan = uniform_plan(fashion["model"], scheme, fashion["profile"])
        if float_layer:
            plan.layers[float_layer].precision = "fp32"
        calibration = fashion["calibration"] if scheme == "int8" else None
        result[key] = export_tflite(
            fashion["onnx"], plan, fashion["root"] / f"{key}.tflite", work, calibration, io_dtype=io_dtype
        )
    return result


def _run(export: TFLiteExport, feeds: dict[str, np.ndarray]) -> np.ndarray:
    runner = LiteRTRunner(export.path, threads=1, **export.runner_kwargs())
    assert runner.input_names == ["x"] and runner.output_names == ["linear"]
    assert runner.load_seconds > 0
    description = runner.describe()
    assert description["runtime"] == "litert" and description["version"] and description["threads"] == 1
    return runner.run(feeds)[0]


@pytest.mark.parametrize("key", ["fp32", "fp16"])
def test_float_models_agree_with_onnx(fashion, exports, key):
    out = _run(exports[key], fashion["feeds"])
    agreement = np.mean(out.argmax(1) == fashion["reference"].argmax(1))
    assert agreement >= 0.995, f"{key}: top-1 agreement {agreement:.4f}"
    assert np.abs(out - fashion["reference"]).max() < (1e-3 if key == "fp32" else 0.1)
    expected = "fp32" if key == "fp32" else "fp16"
    assert set(exports[key].applied.values()) == {expected}
    assert exports[key].not_expressible == {}


@pytest.mark.parametrize("key", ["int8-dynamic", "int8", "int8-io", "mixed"])
def test_quantized_models_stay_within_one_point(fashion, exports, key):
    out = _run(exports[key], fashion["feeds"])
    labels = fashion["labels"]
    reference_top1 = np.mean(fashion["reference"].argmax(1) == labels)
    top1 = np.mean(out.argmax(1) == labels)
    assert reference_top1 > 0.85
    assert reference_top1 - top1 <= 0.01, f"{key}: top-1 {top1:.3f} vs fp32 {reference_top1:.3f}"


def test_full_integer_file_is_int8(exports):
    export = exports["int8"]
    assert set(export.applied.values()) == {"int8"}
    assert export.not_expressible == {}
    assert export.inputs[0].dtype == "float32"  # io_dtype float32: quantize op inside the model
    io = exports["int8-io"]
    assert io.inputs[0].dtype == "int8" and io.outputs[0].dtype == "int8"
    assert io.inputs[0].scale and io.inputs[0].scale > 0 and io.inputs[0].zero_point is not None
    assert io.path.stat().st_size < 0.4 * exports["fp32"].path.stat().st_size


def test_dynamic_range_reports_small_layers_left_float(exports):
    export = exports["int8-dynamic"]
    assert export.mode == "dynamic"
    assert "int8-dynamic" in export.applied.values()
    for layer, precision in export.applied.items():
        if precision != "int8-dynamic":
            assert layer in export.not_expressible  # e.g. the 288-weight first conv


def test_mixed_plan_keeps_the_layer_float_in_the_file(fashion, exports):
    export = exports["mixed"]
    assert export.applied[MIXED_LAYER] == "fp32"
    assert all(p == "int8" for layer, p in export.applied.items() if layer != MIXED_LAYER)
    # Read the file itself: exactly one conv runs on float32 activations with float32
    # weights, and its weights have the size of the planned layer's weights.
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(
        model_path=str(export.path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    interp.allocate_tensors()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    float_convs = []
    int8_convs = 0
    for op in interp._get_ops_details():
        if op["op_name"] != "CONV_2D":
            continue
        activation, weight = (tensors[i] for i in op["inputs"][:2])
        if activation["dtype"] == np.float32 and weight["dtype"] == np.float32:
            float_convs.append(int(np.prod(weight["shape"])))
        elif activation["dtype"] == np.int8 and weight["dtype"] == np.int8:
            int8_convs += 1
    planned = next(init for init in fashion["model"].graph.initializer if init.name == f"{MIXED_LAYER}.0.weight")
    assert float_convs == [numpy_helper.to_array(planned).size]
    assert int8_convs == 3


def test_later_int8_builds_reuse_the_calibration(exports):
    # int8, then int8-io and mixed in the same work folder: one onnx2tf run + calibration,
    # the others only re-quantize (a search builds many plans of one model and data).
    assert not any("re-used the calibrated model" in n for n in exports["int8"].notes)
    for key in ("int8-io", "mixed"):
        assert any("re-used the calibrated model" in n for n in exports[key].notes)
        assert exports[key].seconds < exports["int8"].seconds


def test_percentile_ranges_narrow_the_calibrated_ranges(fashion, exports):
    plan = uniform_plan(fashion["model"], "int8", fashion["profile"])
    plan.details.update({"calibration": "percentile", "percentile": 99.9})
    work = fashion["root"] / "work-percentile"
    export = export_tflite(fashion["onnx"], plan, fashion["root"] / "percentile.tflite", work, fashion["calibration"])
    note = next(n for n in export.notes if n.startswith("percentile 99.9 activation ranges"))
    narrowed, seen = (int(x) for x in note.split(": ")[1].split(" narrowed")[0].split(" of "))
    assert 0 < narrowed <= seen
    # Narrower ranges give a different file that still classifies like the min/max one.
    assert export.path.read_bytes() != exports["int8"].path.read_bytes()
    labels = fashion["labels"]
    top1 = np.mean(_run(export, fashion["feeds"]).argmax(1) == labels)
    assert top1 >= np.mean(fashion["reference"].argmax(1) == labels) - 0.01


def test_bias_correction_is_measured_on_the_int8_kernels(fashion, exports):
    """The plan's bias correction, applied to the int8 TFLite model itself: every int8 layer's
    output mean is matched to the float model's on the calibration samples, so the logits'
    per-class mean error on held-out images shrinks, and accuracy holds."""
    plan = uniform_plan(fashion["model"], "int8", fashion["profile"])
    plan.details["bias_correction"] = True
    work = fashion["root"] / "work-bias"
    shutil.copytree(fashion["root"] / "work" / "calibrated-tflite", work / "calibrated-tflite")  # int8's calibration
    export = export_tflite(fashion["onnx"], plan, fashion["root"] / "corrected.tflite", work, fashion["calibration"])
    note = next(n for n in export.notes if n.startswith("bias correction measured on the int8 TFLite kernels"))
    assert int(note.split(": ")[1].split(" layer")[0]) >= 3  # conv, conv, linear...
    assert any("re-used the calibrated model" in n for n in export.notes)

    # The logits' per-class mean error, measured: 0.025 -> 0.003 on the calibration samples
    # and on held-out images alike.
    calibration_feeds = fashion["calibration"].batch(0, 64)
    session = ort.InferenceSession(str(fashion["onnx"]), providers=["CPUExecutionProvider"])
    calibration_reference = session.run(None, calibration_feeds)[0]
    for feeds, reference, factor in (
        (calibration_feeds, calibration_reference, 0.3),
        (fashion["feeds"], fashion["reference"], 0.3),
    ):
        plain_bias = np.abs((_run(exports["int8"], feeds) - reference).mean(0)).mean()
        corrected_bias = np.abs((_run(export, feeds) - reference).mean(0)).mean()
        assert corrected_bias < factor * plain_bias, (plain_bias, corrected_bias)
    reference, corrected = fashion["reference"], _run(export, fashion["feeds"])
    labels = fashion["labels"]
    assert np.mean(corrected.argmax(1) == labels) >= np.mean(reference.argmax(1) == labels) - 0.01


def test_gptq_rounding_stays_on_the_grid_and_lowers_the_error(fashion, exports):
    """GPTQ re-rounds the conv weights on the quantizer's own int8 grid (same scales, same
    ops), and the held-out logits get closer to fp32 than round-to-nearest's."""
    plan = uniform_plan(fashion["model"], "int8", fashion["profile"])
    plan.details.update({"bias_correction": True, "weight_rounding": "gptq"})
    work = fashion["root"] / "work-gptq"
    shutil.copytree(fashion["root"] / "work" / "calibrated-tflite", work / "calibrated-tflite")
    export = export_tflite(fashion["onnx"], plan, fashion["root"] / "gptq.tflite", work, fashion["calibration"])
    note = next(n for n in export.notes if n.startswith("GPTQ weight rounding on the int8 TFLite model"))
    assert note.endswith("4 conv(s)")

    def conv_weights(path: Path) -> dict[str, tuple]:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path))
        tensors = {t["index"]: t for t in interp.get_tensor_details()}
        found = {}
        for op in interp._get_ops_details():
            if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                weight = tensors[op["inputs"][1]]
                scales = weight["quantization_parameters"]["scales"]
                found[weight["name"]] = (weight["dtype"], scales, interp.get_tensor(weight["index"]))
        return found

    plain, rounded = conv_weights(exports["int8"].path), conv_weights(export.path)
    assert plain.keys() == rounded.keys() and len(plain) == 4
    changed = 0
    for name, (dtype, scales, values) in rounded.items():
        assert dtype == np.int8 and np.array_equal(scales, plain[name][1])
        changed += int(np.count_nonzero(values != plain[name][2]))
    assert changed > 0
    reference = fashion["reference"]
    error = {
        k: float(np.mean((_run(e, fashion["feeds"]) - reference) ** 2))
        for k, e in (("plain", exports["int8"]), ("gptq", export))
    }
    print("gptq", error, changed)
    assert error["gptq"] < error["plain"], error


def test_layout_and_io_description(exports):
    export = exports["fp32"]
    assert export.input_layout == {"x": "NHWC"}
    assert export.transposes == {"x": [0, 2, 3, 1]}
    assert export.inputs[0].shape == [1, 28, 28, 1]
    assert export.outputs[0].name == "linear" and export.outputs[0].shape == [1, 10]
    assert export.output_transposes == {}
    assert export.to_dict()["path"] == str(export.path)


def test_original_onnx_is_unchanged_and_no_network_was_tried(fashion, exports):
    assert sha256_file(fashion["onnx"]) == fashion["sha256"]
    work = fashion["root"] / "work"
    folders = list(work.glob("tflite-*"))
    assert len(folders) == len(exports)
    assert not list(work.rglob("network_attempts.log"))
    assert not any("network" in note for e in exports.values() for note in e.notes)


def _three_channel_model(path: Path) -> onnx.ModelProto:
    """A tiny 3-channel image model: the input kind onnx2tf downloads sample images for."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"], name="relu"),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return model


def test_three_channel_image_model_converts_offline(tmp_path, no_network):
    path = tmp_path / "tiny.onnx"
    model = _three_channel_model(path)
    rng = np.random.default_rng(1)
    profile, _ = resolve_profile("cpu")
    export = export_tflite(path, uniform_plan(model, "none", profile), tmp_path / "tiny.tflite", tmp_path / "w", None)
    assert not list((tmp_path / "w").rglob("network_attempts.log"))
    assert export.output_transposes == {"y": [0, 3, 1, 2]}  # NHWC output back to NCHW
    x = rng.random((1, 3, 8, 8), dtype=np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = LiteRTRunner(export.path, **export.runner_kwargs()).run({"x": x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_without_the_placeholder_the_download_is_refused(tmp_path, no_network, monkeypatch):
    """Proves the child's guard catches onnx2tf's real download (and that the placeholder is what avoids it)."""
    import edgeport.formats.tflite.onnx2tf_input as tflite_out

    monkeypatch.setattr(tflite_out, "PLACEHOLDER_NAME", "not_the_placeholder.npy")
    path = tmp_path / "tiny.onnx"
    model = _three_channel_model(path)
    profile, _ = resolve_profile("cpu")
    with pytest.raises(ConversionError, match="network access is disabled"):
        export_tflite(path, uniform_plan(model, "none", profile), tmp_path / "t.tflite", tmp_path / "w", None)
    logs = list((tmp_path / "w").rglob("network_attempts.log"))
    assert logs and logs[0].read_text().strip()  # the proxy (127.0.0.1) or github.com, refused


def test_network_guard_refuses_and_logs(tmp_path):
    code = (
        "import sys, urllib.request\n"
        "from pathlib import Path\n"
        "from edgeport.formats.tflite.onnx2tf_child import block_network\n"
        f"block_network(Path({str(tmp_path / 'net.log')!r}))\n"
        "try:\n"
        "    urllib.request.urlopen('http://example.com', timeout=2)\n"
        "except OSError:\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    env = {k: v for k, v in os.environ.items() if k.lower() not in {p.lower() for p in NO_NETWORK}}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0
    assert "example.com" in (tmp_path / "net.log").read_text()


def test_child_crash_becomes_conversion_error(fashion, tmp_path):
    plan = uniform_plan(fashion["model"], "none", fashion["profile"])
    with pytest.raises(ConversionError, match="crashed \\(SIGSEGV\\)") as info:
        export_tflite(fashion["onnx"], plan, tmp_path / "x.tflite", tmp_path, None, _crash_for_test=True)
    assert info.value.exit_code == 4
    assert not (tmp_path / "x.tflite").exists()


def test_child_timeout_becomes_conversion_error(fashion, tmp_path):
    plan = uniform_plan(fashion["model"], "none", fashion["profile"])
    with pytest.raises(ConversionError, match="timed out after 0.5 s"):
        export_tflite(fashion["onnx"], plan, tmp_path / "x.tflite", tmp_path, None, timeout_s=0.5)
    assert not (tmp_path / "x.tflite").exists()
    assert sha256_file(fashion["onnx"]) == fashion["sha256"]


def test_plan_mapping_of_inexpressible_precisions(fashion):
    plan = uniform_plan(fashion["model"], "int4-weight", fashion["profile"])
    not_expressible, float_layers = _expected(plan, "dynamic")
    assert set(not_expressible) == set(plan.layers) and not float_layers
    assert all("int4" in why for why in not_expressible.values())
    plan = uniform_plan(fashion["model"], "int8", fashion["profile"])
    plan.layers["classifier"].precision = "fp16"
    not_expressible, float_layers = _expected(plan, "int8")
    assert set(float_layers) == {"classifier"} and "fp16" in not_expressible["classifier"]
