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
    assert described["threads"] == 2 and "HeadlessChrome" in described["user_agent"]
    timed = time_in_page({"fp32": fp32, "int8": int8}, [{"x": x}], runs=10, warmup=2)
    assert {k: len(v) for k, v in timed.items()} == {"fp32": 10, "int8": 10}
    fp32.close()  # a shared session stays open
    assert int8.run({"x": x})[0].shape == (1, 10)


def test_runner_opens_its_own_session(ort_web_dir, chromium_binary, web_models):
    runner = BrowserRunner(str(web_models["int8"]), threads=1)
    try:
        assert runner.describe()["threads"] == 1
        x = samples(1, seed=4)[0]
        expected = ort.InferenceSession(str(web_models["int8"])).run(None, {"x": x})[0]
        assert np.abs(runner.run({"x": x})[0] - expected).max() <= 0.02 * np.abs(expected).max()
    finally:
        runner.close()
    assert runner.session._browser is None and runner.session._server is None
