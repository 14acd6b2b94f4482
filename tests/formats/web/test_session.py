"""The browser runtime in a real headless Chromium (onnxruntime-web, wasm backend): outputs close
to Python's ONNX Runtime, timings from the page, what the page reports about itself, and every
error as one line of the right type."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeport.core.errors import ConversionError, EdgeportError, InputError
from edgeport.formats.web.assets import ORT_WEB_VERSION
from edgeport.formats.web.session import BrowserSession
from tests.formats.web.conftest import samples


def python_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    """The model's output under Python's ONNX Runtime (CPU)."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def loaded(browser, web_models) -> dict[str, dict]:
    """fp32 and int8 loaded once in the shared page."""
    return {name: browser.load(name, f"{name}.onnx", placements=True) for name in ("fp32", "int8")}


def test_info_reports_isolated_threads_and_simd(browser):
    info = browser.info()
    assert info["backend"] == "wasm"
    assert info["ort_version"] == ORT_WEB_VERSION
    assert info["cross_origin_isolated"] is True  # the server's COOP/COEP headers work
    assert info["threads"] == 2  # asked for 2 and onnxruntime-web kept them (it falls back to 1 when not isolated)
    assert info["simd"] is True
    assert "HeadlessChrome" in info["user_agent"]
    assert info["heap"]["used_bytes"] > 0


def test_fp32_and_int8_outputs_match_python(browser, loaded, web_models):
    assert loaded["fp32"]["inputs"] == ["x"] and loaded["fp32"]["outputs"] == ["y"]
    assert loaded["fp32"]["compile_ms"] > 0 and loaded["fp32"]["load_ms"] >= 0
    # the wasm backend is onnxruntime's CPU provider: it runs every node, the int8 ones included
    assert loaded["fp32"]["placements"] == {"CPUExecutionProvider": {"count": 7, "nodes": []}}
    assert list(loaded["int8"]["placements"]) == ["CPUExecutionProvider"]
    # the int8 file is about 4x smaller, and the page fetched all of it
    assert loaded["int8"]["bytes"] == web_models["int8"].stat().st_size < loaded["fp32"]["bytes"] / 3
    for x in samples(3):
        fp32 = browser.run("fp32", {"x": x})
        assert len(fp32) == 1 and fp32[0].dtype == np.float32 and fp32[0].shape == (1, 10)
        np.testing.assert_allclose(fp32[0], python_outputs(web_models["fp32"], x), atol=1e-4, rtol=1e-4)
        int8 = browser.run("int8", {"x": x})[0]
        expected = python_outputs(web_models["int8"], x)
        # int8 kernels may round differently in wasm than on x86 (no VNNI): a small share of the range
        assert np.abs(int8 - expected).max() <= 0.02 * np.abs(expected).max()
        # and int8 stays near fp32 (the quantization error of this random net is a few % of its range)
        assert np.abs(int8 - fp32[0]).max() <= 0.1 * np.abs(fp32[0]).max()


def test_benchmark_interleaves_and_returns_positive_timings(browser, loaded):
    runs = 30
    timed = browser.benchmark(["fp32", "int8"], [{"x": x} for x in samples(2)], runs=runs, warmup=3)
    assert set(timed) == {"fp32", "int8"}
    for values in timed.values():
        assert len(values) == runs and all(isinstance(v, int) and v > 0 for v in values)
        assert np.median(values) < 1e9  # a few ms per run, not seconds: the loop ran in the page
    fp32, int8 = (float(np.median(timed[n])) / 1e6 for n in ("fp32", "int8"))
    print(f"in-page latency p50: fp32 {fp32:.3f} ms, int8 {int8:.3f} ms ({fp32 / int8:.2f}x)")
    assert browser.heap()["used_bytes"] > 0


def test_missing_kernel_names_the_op(browser, web_models):
    with pytest.raises(ConversionError) as caught:
        browser.load("custom", "custom.onnx")
    text = caught.value.one_line()
    assert "Frobnicate" in text and "\n" not in text and caught.value.exit_code == 4
    with pytest.raises(ConversionError) as caught:  # a standard op without a kernel for its type
        browser.load("nokernel", "nokernel.onnx")
    assert caught.value.message == "onnxruntime-web (wasm) has no kernel for the op Asinh (node 'asinh_f64')"
    assert browser.run("fp32", {"x": samples(1)[0]})[0].shape == (1, 10)  # the page still works


def test_broken_model_fails_in_one_line(browser, web_models):
    with pytest.raises(ConversionError) as caught:
        browser.load("broken", "broken.onnx")
    assert "loading broken.onnx" in caught.value.message and "\n" not in caught.value.one_line()
    with pytest.raises(InputError):
        browser.load("nothing", "missing.onnx")


def test_no_browser_is_an_input_error(monkeypatch, web_models):
    monkeypatch.setenv("EDGEPORT_CHROMIUM", "/nonexistent")
    with pytest.raises(InputError) as caught:
        BrowserSession(web_models["fp32"].parent).open()
    assert caught.value.one_line().startswith("no Chromium found")
    assert "apt-get install chromium" in caught.value.one_line() and caught.value.exit_code == 2


def test_page_error_and_timeout_fail_cleanly(ort_web_dir, chromium_binary, web_models):
    session = BrowserSession(web_models["fp32"].parent, timeout_s=30)
    with session:
        with pytest.raises(ConversionError) as caught:  # the error fails the step it arrives in
            session.raise_in_page("deliberate failure 42")
            time.sleep(0.5)
            session.info()
        assert "deliberate failure 42" in caught.value.message and "\n" not in caught.value.one_line()
        browser = session._browser
    assert browser is not None and not browser.alive() and not browser.profile.exists()  # cleaned up
    start = time.monotonic()
    with pytest.raises(ConversionError) as caught:
        BrowserSession(web_models["fp32"].parent, timeout_s=0.05).open()
    assert "timed out after 0.05 s during starting the page" in caught.value.message
    assert time.monotonic() - start < 10


def test_broken_ort_web_is_a_page_error(tmp_path, monkeypatch, ort_web_dir, chromium_binary, web_models):
    # onnxruntime-web files whose ES module does not parse: the page's import fails
    for item in ort_web_dir.iterdir():
        (tmp_path / item.name).symlink_to(item)
    (tmp_path / "ort.wasm.min.mjs").unlink()
    (tmp_path / "ort.wasm.min.mjs").write_text("export const = ;\n")
    monkeypatch.setenv("EDGEPORT_ORT_WEB", str(tmp_path))
    with pytest.raises(EdgeportError) as caught:
        BrowserSession(web_models["fp32"].parent, timeout_s=30).open()
    assert isinstance(caught.value, ConversionError)
    assert "starting onnxruntime-web" in caught.value.message and "\n" not in caught.value.one_line()
