"""The bundle's web/ folder works without edgeport: served by Python's plain static server (with
the COOP/COEP headers added, as any server can), web/index.html?model=...&data=... runs the
reference inputs in Chromium and writes the outputs into the page."""

from __future__ import annotations

import functools
import html
import json
import re
import shutil
import subprocess
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeport.formats.web.chromium import flags_for
from edgeport.formats.web.web_folder import write_web_folder
from tests.formats.web.conftest import samples


class IsolatedHandler(SimpleHTTPRequestHandler):
    """http.server's static handler plus the two headers that make the page cross-origin isolated."""

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def dump_dom(chromium: Path, url: str) -> str:
    """The page's DOM once its work is done. --virtual-time-budget lets the page's fetches, wasm
    compilation and runs finish before the dump (page timings are virtual then, so not checked)."""
    profile = tempfile.mkdtemp(prefix="edgeport-test-chromium-")
    try:
        command = [str(chromium), *flags_for("wasm"), f"--user-data-dir={profile}", "--virtual-time-budget=30000"]
        done = subprocess.run([*command, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=False)
        return done.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_web_folder_runs_on_a_plain_static_server(tmp_path, ort_web_dir, chromium_binary, web_models):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copyfile(web_models["fp32"], bundle / "model.onnx")
    x = samples(1, seed=5)[0]
    np.savez_compressed(bundle / "reference.npz", x=x)  # deflated entries: the page inflates them
    sizes = write_web_folder(bundle, ("wasm",))
    assert set(sizes) >= {"web/index.html", "web/edgeport-web.mjs", "web/ort/ort-wasm-simd-threaded.wasm"}
    assert not any("asyncify" in name for name in sizes)  # only the backend asked for is vendored
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(IsolatedHandler, directory=str(bundle)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/web/index.html?model=../model.onnx&data=../reference.npz"
        dom = dump_dom(chromium_binary, url)
    finally:
        server.shutdown()
        server.server_close()
    assert 'data-state="done"' in dom, dom[-800:]
    result = json.loads(html.unescape(re.search(r'<pre id="result">(.*?)</pre>', dom, re.S).group(1)))
    expected = ort.InferenceSession(str(bundle / "model.onnx")).run(None, {"x": x})[0][0]
    shown = result["outputs"]["y"]
    assert shown["dims"] == [1, 10] and shown["dtype"] == "float32"
    np.testing.assert_allclose(shown["first"], expected[:8], atol=1e-4, rtol=1e-4)
    assert abs(shown["max"] - expected.max()) < 1e-4 and result["latency_ms"]["runs"] == 20
    assert result["info"]["cross_origin_isolated"] is True and result["info"]["simd"] is True
