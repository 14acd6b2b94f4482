"""BrowserRunner: the Runner protocol over a browser page; runners sharing one session are timed
side by side in it."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from edgeport.core.contracts import Runner
from edgeport.formats.web.assets import ORT_WEB_VERSION
from edgeport.formats.web.runner import BrowserRunner, time_in_page
from tests.formats.web.conftest import samples


def test_runners_share_a_page_and_follow_the_protocol(browser, web_models):
    fp32 = BrowserRunner(str(web_models["fp32"]), session=browser)
    int8 = BrowserRunner(str(web_models["int8"]), session=browser)
    assert isinstance(fp32, Runner) and fp32.kind == "browser-wasm"
    assert fp32.input_names == ["x"] and fp32.output_names == ["y"] and fp32.load_seconds > 0
    x = samples(1, seed=3)[0]
    expected = ort.InferenceSession(str(web_models["fp32"])).run(None, {"x": x})[0]
    # float64 feeds are cast to the model's float32, as the other runners do
    np.testing.assert_allclose(fp32.run({"x": x.astype(np.float64)})[0], expected, atol=1e-4, rtol=1e-4)
    described = fp32.describe()
    assert described["runtime"] == f"onnxruntime-web {ORT_WEB_VERSION} (wasm)"
    assert described["threads"] == 2 and "HeadlessChrome" in described["browser"]["user_agent"]
    assert described["browser"]["browser"].startswith("Chromium ") and described["browser"]["simd"] is True
    assert described["load"]["compile_ms"] > 0 and described["memory"]["js_heap_mb"] > 0
    timed = time_in_page({"fp32": fp32, "int8": int8}, [{"x": x}], runs=10, warmup=2)
    assert {k: len(v) for k, v in timed.items()} == {"fp32": 10, "int8": 10}
    assert fp32.time_together({"fp32": fp32, "int8": int8}, [{"x": x}], 4, 1) is not None
    fp32.close()  # releases its model; the shared session stays open
    assert int8.run({"x": x})[0].shape == (1, 10)
    assert browser.alive()


def test_runners_without_a_session_share_the_process_page(ort_web_dir, chromium_binary, web_models, tmp_path):
    """RunnerSpec.open makes runners one by one: they join one page per backend and threads,
    wherever their files are, so the artifact and its fp32 reference are timed side by side."""
    from edgeport.formats.web.runner import close_shared_sessions

    elsewhere = tmp_path / "other" / "model.onnx"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(web_models["fp32"].read_bytes())
    runner = BrowserRunner(str(web_models["int8"]), threads=1)
    other = BrowserRunner(str(elsewhere), threads=1)
    try:
        assert runner.session is other.session and runner.describe()["threads"] == 1
        x = samples(1, seed=4)[0]
        expected = ort.InferenceSession(str(web_models["int8"])).run(None, {"x": x})[0]
        assert np.abs(runner.run({"x": x})[0] - expected).max() <= 0.02 * np.abs(expected).max()
        reference = ort.InferenceSession(str(elsewhere)).run(None, {"x": x})[0]
        np.testing.assert_allclose(other.run({"x": x})[0], reference, atol=1e-4, rtol=1e-4)
        timed = runner.time_together({"a": runner, "b": other}, [{"x": x}], 6, 1)
        assert {k: len(v) for k, v in timed.items()} == {"a": 6, "b": 6}
    finally:
        session = runner.session
        runner.close()
        other.close()
        close_shared_sessions()
    assert session._browser is None and session._server is None
