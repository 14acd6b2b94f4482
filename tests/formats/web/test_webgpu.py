"""onnxruntime-web's WebGPU backend in headless Chromium. Without a GPU, Chromium offers Dawn's
SwiftShader adapter (software Vulkan) when started with --enable-unsafe-webgpu: the outputs are
real, the timings are those of a software adapter. Skips with the page's reason when no adapter."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgeport.formats.web.runner import BrowserRunner
from edgeport.formats.web.session import BrowserSession
from tests.formats.web.conftest import samples


@pytest.fixture(scope="module")
def gpu_page(ort_web_dir, chromium_binary, web_models):
    with BrowserSession(web_models["fp32"].parent, backend="webgpu", timeout_s=90) as session:
        adapter = session.info()["webgpu"]
        if not adapter["available"]:
            pytest.skip(f"no WebGPU adapter: {adapter['reason']}")
        yield session


def test_webgpu_runs_on_the_software_adapter(gpu_page, web_models):
    adapter = gpu_page.info()["webgpu"]
    assert adapter["architecture"] == "swiftshader" and adapter["is_fallback_adapter"] is True
    runner = BrowserRunner(str(web_models["fp32"]), backend="webgpu", session=gpu_page)
    described = runner.describe()
    assert described["runtime"].endswith("(webgpu)")
    assert described["browser"]["adapter"] == "software adapter (google swiftshader)"
    assert described["browser"]["software_adapter"] is True
    loaded = gpu_page.load("fp32", "fp32.onnx", placements=True)
    # every node of the float model runs on the GPU (none falls back to the wasm CPU kernels)
    assert loaded["placements"] == {"WebGpuExecutionProvider": {"count": 9, "nodes": []}}
    x = samples(1, seed=6)[0]
    expected = ort.InferenceSession(str(web_models["fp32"])).run(None, {"x": x})[0]
    np.testing.assert_allclose(gpu_page.run("fp32", {"x": x})[0], expected, atol=1e-4, rtol=1e-4)


def test_int8_qdq_quantize_nodes_fall_back_to_cpu(gpu_page, web_models):
    placed = gpu_page.load("int8", "int8.onnx", placements=True)["placements"]
    cpu = placed["CPUExecutionProvider"]["nodes"]
    # QuantizeLinear has no WebGPU kernel: each runs on the CPU, with copies to and from the GPU;
    # DequantizeLinear, Conv and MatMul (in float, after dequantizing) stay on the GPU
    assert cpu and all(node.startswith("QuantizeLinear ") for node in cpu)
    gpu_ops = {node.split(" ")[0] for node in placed["WebGpuExecutionProvider"]["nodes"]}
    assert {"DequantizeLinear", "Conv", "MatMul", "MemcpyFromHost", "MemcpyToHost"} <= gpu_ops
    x = samples(1, seed=6)[0]
    expected = ort.InferenceSession(str(web_models["int8"])).run(None, {"x": x})[0]
    assert np.abs(gpu_page.run("int8", {"x": x})[0] - expected).max() <= 0.02 * np.abs(expected).max()
