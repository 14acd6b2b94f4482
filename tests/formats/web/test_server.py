"""The local server: COOP/COEP/CORP headers and no caching on every response, JavaScript and wasm
MIME types, nothing served from outside its folders, and the control channel's long poll."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from edgeport.formats.web.channel import Channel
from edgeport.formats.web.server import serve


@pytest.fixture()
def server(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    ort_dir = tmp_path / "ort"
    ort_dir.mkdir()
    (ort_dir / "ort-wasm-simd-threaded.wasm").write_bytes(b"\0asm")
    (tmp_path / "secret.txt").write_text("outside the root")
    root = tmp_path / "root"
    root.mkdir()
    (root / "model.onnx").write_bytes(b"\x08\x07")
    running = serve(root, ort_dir, Channel())
    yield running
    running.stop()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), b""


def test_headers_and_mime_types(server):
    cases = {
        "/model.onnx": "application/octet-stream",
        "/_edgeport/web/edgeport-web.mjs": "application/javascript",
        "/_edgeport/web/index.html": "text/html; charset=utf-8",
        "/_edgeport/web/ort/ort-wasm-simd-threaded.wasm": "application/wasm",
    }
    for path, mime in cases.items():
        status, headers, body = get(server.url + path)
        assert status == 200 and headers["Content-Type"] == mime and body, path
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
        assert headers["Cache-Control"] == "no-store"


def test_nothing_outside_the_folders(server):
    for path in (
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/_edgeport/web/../../session.py",
        "/_edgeport/web/ort/../secret.txt",
    ):
        status, headers, _ = get(server.url + path)
        assert status == 404, path
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"


def test_control_channel_round_trip(server):
    channel = server.channel
    command_id = channel.send("run", b"npz bytes", name="m")

    def page() -> None:  # what control.mjs does: poll, fetch the blob, reply
        _, _, body = get(server.url + "/_edgeport/next")
        command = json.loads(body)
        _, _, blob = get(server.url + command["feeds"])
        request = urllib.request.Request(
            f"{server.url}/_edgeport/reply?id={command['id']}", data=blob[::-1], method="POST",
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        urllib.request.urlopen(request, timeout=10).close()

    thread = threading.Thread(target=page)
    thread.start()
    reply = channel.wait(command_id, 10, "test")
    thread.join()
    assert reply.body == b"setyb zpn" and reply.content_type == "application/octet-stream"
