"""One headless Chromium page running onnxruntime-web, driven from Python.

``BrowserSession`` serves a root folder (``server.py``), opens edgeport's control page in
Chromium (``chromium.py``) and sends it commands: load a model, run it, time several models
side by side, describe the browser. Every failure is one line: no browser is an InputError; a
page error, a failed load, a missing kernel or a timeout is a ConversionError.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from edgeport.core.errors import ConversionError, InputError
from edgeport.formats.web import chromium
from edgeport.formats.web.assets import ensure_ort_web
from edgeport.formats.web.channel import Channel, Reply, one_line
from edgeport.formats.web.server import EdgeportServer, serve
from edgeport.formats.web.tensors import feeds_npz, unpack

BACKENDS = ("wasm", "webgpu")
CONTROL_PAGE = "/_edgeport/web/index.html?control=1"
# onnxruntime's messages when no execution provider implements a node's op
_MISSING_KERNEL = (
    re.compile(
        r"Could not find an implementation for (?P<op>[\w.:]+)\((?P<opset>\d+)\) node with name '(?P<node>[^']*)'"
    ),
    re.compile(r"(?P<op>[\w.:]+)\((?P<opset>-?\d+)\) is not a registered function/op"),
)


def page_error(message: str, step: str, backend: str) -> ConversionError:
    """Return the ConversionError for a page's error message: a missing kernel names the op."""
    for pattern in _MISSING_KERNEL:
        found = pattern.search(message)
        if found:
            node = found.groupdict().get("node")
            where = f" (node {node!r})" if node else ""
            return ConversionError(
                f"onnxruntime-web ({backend}) has no kernel for the op {found['op']}{where}",
                hint="replace the op with standard ONNX ops, or pick a backend that implements it",
            )
    return ConversionError(f"the page failed during {step}: {one_line(message)}")


class BrowserSession:
    """A served folder open in headless Chromium with onnxruntime-web loaded (a context manager).

    ``root``: the folder models are read from (paths given to :meth:`load` are relative to it);
    ``backend``: ``wasm`` or ``webgpu``; ``threads``: onnxruntime-web's wasm threads (None: its
    default); ``timeout_s``: the limit of each step (start, load, run, benchmark). After a page
    error (window.onerror, an unhandled rejection) every later step fails with it too: the page's
    state is unknown, so open a new session.
    """

    def __init__(
        self, root: Path | str, backend: str = "wasm", threads: int | None = None, timeout_s: float = 120.0
    ) -> None:
        if backend not in BACKENDS:
            raise InputError(f"unknown browser backend {backend!r}", hint=f"one of {', '.join(BACKENDS)}")
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise InputError(f"{root} is not a folder")
        self.backend, self.threads, self.timeout_s = backend, threads, timeout_s
        self._server: EdgeportServer | None = None
        self._browser: chromium.Browser | None = None
        self._channel = Channel()
        self._models: dict[str, dict[str, Any]] = {}
        self._info: dict[str, Any] = {}
        self._failed = False

    # --- life cycle ---
    def __enter__(self) -> BrowserSession:
        return self.open()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> BrowserSession:
        """Serve the root, launch Chromium on the control page and start onnxruntime-web; return self."""
        chromium.find_chromium()  # fail on a missing browser before fetching anything
        ort_dir = ensure_ort_web()
        try:
            self._server = serve(self.root, ort_dir, self._channel)
            self._browser = chromium.launch(self._server.url + CONTROL_PAGE, self.backend)
            self._channel.wait(None, self.timeout_s, "starting the page", self._browser_gone)
            self._info = self._call("setup", "starting onnxruntime-web", backend=self.backend, threads=self.threads)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill the browser (its process group and profile folder) and stop the server."""
        if self._browser is not None:
            self._browser.close()
            self._browser = None
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def url(self) -> str:
        """Return the base URL the root is served at."""
        if self._server is None:
            raise ConversionError("the browser session is not open")
        return self._server.url

    def _browser_gone(self) -> str | None:
        if self._browser is not None and not self._browser.alive():
            tail = self._browser.stderr_tail(1)
            said = one_line(tail) if tail else "no output"
            return f"Chromium exited with code {self._browser.process.returncode} ({said})"
        return None

    def _call(self, op: str, step: str, blob: bytes | None = None, **fields: Any) -> Any:
        """Send one command and return its result (decoded JSON, or a Reply holding tensors)."""
        if self._server is None:
            raise ConversionError("the browser session is not open")
        command_id = self._channel.send(op, blob, **fields)
        try:
            reply = self._channel.wait(command_id, self.timeout_s, step, self._browser_gone)
        except ConversionError:
            self._failed = True  # a page error, a dead browser or a step still running: state unknown
            raise
        assert isinstance(reply, Reply)
        if reply.content_type.startswith("application/octet-stream"):
            return reply
        payload = reply.json()
        if not payload.get("ok"):
            raise page_error(str(payload.get("error")), step, self.backend)
        return payload.get("result")

    # --- commands ---
    def info(self) -> dict[str, Any]:
        """Return what runs the models: user agent, backend, threads in use, cross-origin
        isolation, SIMD, JS heap, onnxruntime-web version; the WebGPU adapter for ``webgpu``."""
        return dict(self._call("info", "describing the browser", gpu=self.backend == "webgpu"))

    def load(self, name: str, model: str, placements: bool = False) -> dict[str, Any]:
        """Fetch and compile ``model`` (a path relative to the root) as ``name``; return its
        ``load_ms`` (fetch) and ``compile_ms`` (session creation), size and input/output names;
        with ``placements``, also ``{execution provider: {"count": n, "nodes": ["Op (node)", ...]}}``
        from onnxruntime's log, after graph optimization (``nodes`` is empty when one provider runs
        them all): which nodes fall back to the CPU."""
        target = (self.root / model).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            raise InputError(f"{model} is not a file under {self.root}")
        return self._load(name, "/" + target.relative_to(self.root).as_posix(), model, placements)

    def load_file(self, name: str, path: Path, placements: bool = False) -> dict[str, Any]:
        """Like :meth:`load`, for a model file anywhere on disk: only that file is served."""
        if self._server is None:
            raise ConversionError("the browser session is not open")
        if not Path(path).is_file():
            raise InputError(f"{path} is not a file")
        return self._load(name, self._server.register(Path(path)), Path(path).name, placements)

    def _load(self, name: str, url: str, what: str, placements: bool) -> dict[str, Any]:
        result = self._call("load", f"loading {what}", name=name, url=url, backend=self.backend, placements=placements)
        self._models[name] = result
        return dict(result)

    def release(self, name: str) -> None:
        """Release the model ``name`` in the page (its onnxruntime-web session and memory)."""
        if self._models.pop(name, None) is not None and self.alive():
            self._call("release", f"releasing {name}", name=name)

    @property
    def failed(self) -> bool:
        """Whether a step failed in a way that leaves the page's state unknown (a page error, a
        timeout, the browser gone): open a new session then."""
        return self._failed

    def alive(self) -> bool:
        """Whether the session is open and its browser still runs."""
        return self._server is not None and self._browser_gone() is None

    def _model(self, name: str) -> dict[str, Any]:
        if name not in self._models:
            raise InputError(f"no model loaded as {name!r}")
        return self._models[name]

    def input_names(self, name: str) -> list[str]:
        """Return the input names of the model loaded as ``name``."""
        return list(self._model(name)["inputs"])

    def output_names(self, name: str) -> list[str]:
        """Return the output names of the model loaded as ``name``, in the order run returns them."""
        return list(self._model(name)["outputs"])

    def run(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model ``name`` on ``feeds`` in the page; return its outputs in output order."""
        self._model(name)
        reply = self._call("run", f"running {name}", feeds_npz([feeds]), name=name)
        if not isinstance(reply, Reply):
            raise ConversionError(f"the page sent no tensors for {name}")
        return unpack(reply.body)[1]

    def benchmark(
        self, names: list[str], feed_list: list[dict[str, np.ndarray]], runs: int, warmup: int
    ) -> dict[str, list[int]]:
        """Time the models ``names`` in the page, interleaved (A B B A ...), after warming each up
        ``max(warmup, len(feed_list))`` times; run ``i`` feeds ``feed_list[i % len]``. Returns per
        name ``runs`` timings in nanoseconds (performance.now(), 5 us resolution when isolated)."""
        for name in names:
            self._model(name)
        result = self._call(
            "benchmark",
            f"benchmarking {', '.join(names)}",
            feeds_npz(feed_list or [{}]),
            names=list(names),
            runs=int(runs),
            warmup=int(warmup),
        )
        return {name: [max(1, round(ms * 1e6)) for ms in result[name]] for name in names}

    def heap(self) -> dict[str, Any]:
        """Return the page's JS heap (used, total, limit bytes; Chromium's performance.memory)."""
        return dict(self._call("heap", "reading the JS heap") or {})

    def raise_in_page(self, message: str) -> None:
        """Throw an uncaught error in the page (to test how page errors surface); the next step fails."""
        self._call("throw", "throwing in the page", message=message)
