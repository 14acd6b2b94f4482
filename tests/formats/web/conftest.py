"""Fixtures of the browser runtime's tests: a small conv+matmul ONNX model, its int8 version, and
one headless Chromium session (wasm, 2 threads) shared by the whole test session. Tests skip with
the reason when Chromium or the onnxruntime-web files are unavailable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport.core.errors import EdgeportError
from edgeport.formats.web.assets import ensure_ort_web
from edgeport.formats.web.chromium import find_chromium
from edgeport.formats.web.session import BrowserSession

INPUT_SHAPE = (1, 3, 32, 32)


def conv_matmul_model() -> onnx.ModelProto:
    """Two 3x3 convolutions (3->32->32 channels, ReLU, 2x2 max-pool) and two MatMuls (8192->128->10):
    about 4.3 MB of float32 weights, mostly in the first MatMul."""
    rng = np.random.default_rng(0)

    def weight(name: str, shape: tuple[int, ...], fan_in: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name)

    inits = [
        weight("w1", (32, 3, 3, 3), 27), weight("w2", (32, 32, 3, 3), 288),
        weight("m1", (8192, 128), 8192), weight("m2", (128, 10), 128),
        numpy_helper.from_array(np.zeros(32, np.float32), "b1"),
        numpy_helper.from_array(np.full(32, 0.1, np.float32), "b2"),
        numpy_helper.from_array(np.array([1, 8192], np.int64), "flat"),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "m1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("MatMul", ["hr", "m2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "conv_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def custom_op_model() -> onnx.ModelProto:
    """x -> Relu -> an op of a custom domain (``edgeport.test:Frobnicate``) no runtime implements."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Frobnicate", ["r"], ["y"], domain="edgeport.test", name="frob"),
    ]
    graph = helper.make_graph(
        nodes, "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgeport.test", 1)]
    )
    model.ir_version = 9
    return model


def no_kernel_model() -> onnx.ModelProto:
    """A valid standard op no CPU kernel implements for its type: Asinh on float64."""
    graph = helper.make_graph(
        [helper.make_node("Asinh", ["x"], ["y"], name="asinh_f64")], "no_kernel",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def samples(count: int, seed: int = 1) -> list[np.ndarray]:
    """``count`` random inputs of the test model's shape."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(INPUT_SHAPE).astype(np.float32) for _ in range(count)]


@pytest.fixture(scope="session")
def ort_web_dir() -> Path:
    """The onnxruntime-web files (from the cache, $EDGEPORT_ORT_WEB or npm); skip when unavailable."""
    try:
        return ensure_ort_web()
    except EdgeportError as exc:
        pytest.skip(f"onnxruntime-web unavailable: {exc.one_line()}")


@pytest.fixture(scope="session")
def chromium_binary() -> Path:
    """The Chromium to run; skip when none is installed."""
    try:
        return find_chromium()
    except EdgeportError as exc:
        pytest.skip(exc.one_line())


@pytest.fixture(scope="session")
def web_models(tmp_path_factory) -> dict[str, Path]:
    """fp32.onnx, int8.onnx (static QDQ, uint8 activations, per-channel int8 weights, calibrated on
    16 samples), custom.onnx (an op of an unknown domain), nokernel.onnx (Asinh on float64) and
    broken.onnx (not a model)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    root = tmp_path_factory.mktemp("web_models")
    onnx.save(conv_matmul_model(), root / "fp32.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": x} for x in samples(16, seed=7)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(
        str(root / "fp32.onnx"), str(root / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip
    onnx.save(custom_op_model(), root / "custom.onnx")
    onnx.save(no_kernel_model(), root / "nokernel.onnx")
    (root / "broken.onnx").write_bytes(b"this is not an ONNX model\n" * 10)
    return {p.stem: p for p in root.glob("*.onnx")}


@pytest.fixture(scope="session")
def browser(ort_web_dir, chromium_binary, web_models) -> BrowserSession:
    """One headless Chromium page (wasm, 2 threads) on the models' folder, for the whole session."""
    session = BrowserSession(web_models["fp32"].parent, backend="wasm", threads=2, timeout_s=60)
    with session:
        yield session
