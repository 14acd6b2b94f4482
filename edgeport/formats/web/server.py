"""A local static server for the browser runtime: one root folder, edgeport's page and the vendored
onnxruntime-web, with the headers that make a page cross-origin isolated (so WebAssembly threads
work), plus the control channel the page talks to (``/_edgeport/...``).

Paths: ``/<file>`` from the root; ``/_edgeport/web/<file>`` from the page folder;
``/_edgeport/web/ort/<file>`` from the onnxruntime-web folder; ``/_edgeport/next``,
``/_edgeport/blob/<id>`` (GET) and ``/_edgeport/ready|reply?id=N|error`` (POST) for the channel.
"""

from __future__ import annotations

import json
import mimetypes
import shutil
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from edgeport.formats.web.channel import Channel, Reply

PAGE_DIR = Path(__file__).resolve().parent / "page"  # edgeport's page files (package data)
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# Python's table lacks some and differs by platform; a module script must be JavaScript.
MIME_TYPES = {
    ".mjs": "application/javascript",
    ".js": "application/javascript",
    ".wasm": "application/wasm",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".onnx": "application/octet-stream",
    ".npz": "application/octet-stream",
    ".npy": "application/octet-stream",
    ".css": "text/css",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
MAX_POST_BYTES = 2 << 30


def mime_type(path: Path) -> str:
    """Return the Content-Type to send for ``path``."""
    return MIME_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def resolve_under(base: Path, relative: str) -> Path | None:
    """Return the file ``relative`` under ``base``, or None when it is missing or escapes ``base``."""
    candidate = (base / relative.lstrip("/")).resolve()
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate


class _Handler(BaseHTTPRequestHandler):
    server: EdgeportServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: the driver reports what matters

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _file(self, path: Path | None) -> None:
        if path is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found")
            return
        size = path.stat().st_size
        self.send_response(HTTPStatus.OK)
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        self.send_header("Content-Type", mime_type(path))
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command != "HEAD":
            with open(path, "rb") as source:
                shutil.copyfileobj(source, self.wfile, 1 << 20)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        path = unquote(urlsplit(self.path).path)
        channel = self.server.channel
        try:
            if path == "/_edgeport/next":
                command = channel.next_command() if not channel.closed else None
                if command is None:
                    self._send(HTTPStatus.GONE if channel.closed else HTTPStatus.NO_CONTENT)
                else:
                    self._send(HTTPStatus.OK, json.dumps(command).encode(), "application/json")
            elif path.startswith("/_edgeport/blob/"):
                blob = channel.blob(int(path.rsplit("/", 1)[1]))
                self._send(HTTPStatus.OK, blob, "application/octet-stream") if blob is not None else self._file(None)
            elif path.startswith("/_edgeport/files/"):
                # a model registered by path (outside the root): /_edgeport/files/<n>/<file name>
                token = path[len("/_edgeport/files/") :].split("/", 1)[0]
                self._file(self.server.files.get(token))
            elif path.startswith("/_edgeport/web/ort/") and self.server.ort_dir is not None:
                self._file(resolve_under(self.server.ort_dir, path[len("/_edgeport/web/ort/") :]))
            elif path.startswith("/_edgeport/web/"):
                self._file(resolve_under(PAGE_DIR, path[len("/_edgeport/web/") :]))
            else:
                self._file(resolve_under(self.server.root, path))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away (closing): nothing to answer

    def do_POST(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_POST_BYTES:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        body = self.rfile.read(length)
        channel = self.server.channel
        content_type = self.headers.get("Content-Type", "")
        try:
            if parts.path == "/_edgeport/reply":
                channel.put_reply(int(parse_qs(parts.query)["id"][0]), Reply(content_type, body))
            elif parts.path == "/_edgeport/error":
                channel.put_error(json.loads(body or b"{}"))
            elif parts.path == "/_edgeport/ready":
                channel.put_ready(json.loads(body or b"{}"))
            else:
                self._send(HTTPStatus.NOT_FOUND)
                return
        except (KeyError, ValueError):
            self._send(HTTPStatus.BAD_REQUEST)
            return
        self._send(HTTPStatus.NO_CONTENT)


class EdgeportServer(ThreadingHTTPServer):
    """The threaded server; ``root``, ``ort_dir`` and ``channel`` are what its handlers read."""

    daemon_threads = True

    def __init__(self, root: Path, ort_dir: Path | None, channel: Channel, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.root = Path(root).resolve()
        self.ort_dir = Path(ort_dir).resolve() if ort_dir else None
        self.channel = channel
        # Files served by token only (models anywhere on disk, registered one by one): a shared
        # session loads candidates from a scratch folder and the fp32 model from the bundle.
        self.files: dict[str, Path] = {}
        self._thread: threading.Thread | None = None

    def register(self, path: Path) -> str:
        """Serve the file ``path`` (and nothing beside it); return its URL path."""
        token = str(len(self.files) + 1)
        self.files[token] = Path(path).resolve()
        return f"/_edgeport/files/{token}/{Path(path).name}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: the browser drops its connections when it is killed, which is expected."""

    @property
    def url(self) -> str:
        """Return the base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> EdgeportServer:
        """Serve in a background thread; return self."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the channel, stop serving and release the port."""
        self.channel.close()
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def serve(root: Path, ort_dir: Path | None = None, channel: Channel | None = None, port: int = 0) -> EdgeportServer:
    """Start serving ``root`` (+ the page and ``ort_dir``) on 127.0.0.1; return the running server."""
    return EdgeportServer(root, ort_dir, channel or Channel(), port).start()
