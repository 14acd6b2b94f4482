"""The browser as a target, end to end: ``--optimize_for wasm`` builds an ONNX artifact whose
report figures come from Chromium (onnxruntime-web), ships a web/ page that runs it from any
static server, and ``edgeport verify --runner browser`` re-runs a bundle in the browser."""

from __future__ import annotations

import functools
import html
import json
import re
import shutil
import subprocess
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from edgeport.cli.main import main
from edgeport.formats.web.chromium import flags_for
from tests.formats.web.test_standalone import IsolatedHandler, dump_dom

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
ARTIFACTS = REPO / "out" / "test-artifacts"
DATA = ["--calibration_data", str(EXAMPLES / "fashion_mnist_calib.npz")]
DATA += ["--eval_data", str(EXAMPLES / "fashion_mnist_test_1k.npz")]


@pytest.fixture(scope="module")
def wasm_bundle(tmp_path_factory, ort_web_dir, chromium_binary) -> Path:
    """The example CNN, int8 for browser-wasm, measured in Chromium (built once)."""
    out = tmp_path_factory.mktemp("web-target") / "bundle"
    args = ["--input_model", str(EXAMPLES / "fashion_cnn.pt2"), "--output_format", "onnx", "--quantization", "int8"]
    args += ["--optimize_for", "wasm", *DATA, "--latency_runs", "60", "--output_dir", str(out), "--quiet"]
    result = CliRunner().invoke(main, ["convert", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def test_report_figures_come_from_the_browser(wasm_bundle):
    report = json.loads((wasm_bundle / "report.json").read_text())
    assert report["target"]["profile"] == "browser-wasm" and report["target"]["scheme"] == "int8"
    browser = report["browser"]
    assert browser["browser"].startswith("Chromium ") and "HeadlessChrome" in browser["user_agent"]
    assert browser["backend"] == "wasm" and browser["simd"] is True and browser["cross_origin_isolated"] is True
    assert browser["threads"] == 1 and browser["ort_web_version"]
    assert report["latency"]["measured"].startswith("measured in the browser (Chromium")
    assert report["latency"]["runtime"].startswith("onnxruntime-web ")
    for name in ("reference", "artifact"):
        assert 0 < browser["latency_ms"][name]["p50_ms"] <= browser["latency_ms"][name]["p90_ms"]
        assert browser["load"][name]["compile_ms"] > 0 and browser["memory"][name]["js_heap_mb"] > 0
    # Outputs computed in the page against the fp32 model in Python: int8 keeps the CNN's answers.
    assert report["fidelity"]["top1_agreement"] >= 98.0
    assert abs(report["fidelity"]["artifact_top1"] - report["fidelity"]["reference_top1"]) <= 1.0
    manifest = json.loads((wasm_bundle / "manifest.json").read_text())
    assert manifest["runner"]["kind"] == "browser-wasm"
    assert {"web/index.html", "web/config.json", "web/ort/ort-wasm-simd-threaded.wasm"} <= set(manifest["files"])


def test_bundle_page_runs_from_a_plain_static_server(wasm_bundle, chromium_binary):
    """web/ as a user copies it: Python's static server plus the two headers, no edgeport."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(IsolatedHandler, directory=str(wasm_bundle)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dom = dump_dom(chromium_binary, f"http://127.0.0.1:{server.server_address[1]}/web/index.html")
    finally:
        server.shutdown()
        server.server_close()
    assert 'data-state="done"' in dom, dom[-800:]
    result = json.loads(html.unescape(re.search(r'<pre id="result">(.*?)</pre>', dom, re.S).group(1)))
    reference = np.load(wasm_bundle / "reference.npz")
    inputs = {k.split("/", 1)[1]: reference[k] for k in reference.files if k.startswith("inputs/")}
    session = ort.InferenceSession(str(wasm_bundle / "model.onnx"))
    expected = session.run(None, inputs)
    for output, values in zip(session.get_outputs(), expected, strict=True):
        shown = result["outputs"][output.name]
        assert shown["dims"] == list(values.shape)
        np.testing.assert_allclose(shown["first"], values.reshape(-1)[:8], atol=1e-3, rtol=1e-3)
        # against the source model's outputs stored in reference.npz: int8 logits stay close
        assert shown["max_abs_diff_vs_source"] < 0.1 * np.abs(values).max()
    assert result["backend"] == "wasm" and result["info"]["cross_origin_isolated"] is True


def test_screenshot_of_the_browser_section(wasm_bundle, chromium_binary):
    """The report's browser section, rendered in Chromium and kept as out/test-artifacts/browser_section.png."""
    page = (wasm_bundle / "report.html").read_text()
    start, end = page.index('<h2 id="browser">'), page.index("<h2>Accuracy gate</h2>")
    head = page[: page.index("<body")] + "<body>"
    section = wasm_bundle / "browser_section.html"
    section.write_text(head + page[start:end] + "</body></html>")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "browser_section.png"
    profile = tempfile.mkdtemp(prefix="edgeport-test-chromium-")
    try:
        command = [str(chromium_binary), *flags_for("wasm"), f"--user-data-dir={profile}", "--window-size=1000,420"]
        done = subprocess.run([*command, f"--screenshot={shot}", section.as_uri()], capture_output=True, timeout=90)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        section.unlink()
    assert done.returncode == 0 and shot.stat().st_size > 10_000
    text = re.sub(r"<[^>]+>", " ", page[start:end])
    report = json.loads((wasm_bundle / "report.json").read_text())
    assert f"{report['browser']['latency_ms']['artifact']['p50_ms']:.4f}" in text and "SIMD on" in text


def test_verify_runs_a_bundle_in_the_browser(wasm_bundle):
    from edgeport.verify.bundle_check import verify_bundle

    section = verify_bundle(wasm_bundle, runner="browser", runs=20)
    assert Path(section["report_json"]).name.startswith("report.verify-browser-")
    assert "onnxruntime-web" in json.dumps(section)
    result = CliRunner().invoke(main, ["verify", str(wasm_bundle), "--runner", "browser", "--runs", "20"])
    assert result.exit_code == 0, (result.output, result.exception)


def test_no_browser_is_one_line_and_exit_2(tmp_path, monkeypatch, ort_web_dir):
    monkeypatch.setenv("EDGEPORT_CHROMIUM", str(tmp_path / "nonexistent"))
    monkeypatch.setattr("shutil.which", lambda name: None)
    from edgeport.formats.web import runner

    monkeypatch.setattr(runner, "_shared", {})
    args = ["--input_model", str(EXAMPLES / "fashion_cnn.pt2"), "--output_format", "onnx", "--quantization", "int8"]
    args += ["--optimize_for", "wasm", *DATA, "--output_dir", str(tmp_path / "b")]
    result = CliRunner().invoke(main, ["convert", *args, "--quiet"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Chromium" in errors[0], result.output
    assert not (tmp_path / "b").exists()
