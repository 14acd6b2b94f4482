"""``BrowserRunner``: an ONNX model run by onnxruntime-web in headless Chromium, behind the
``Runner`` protocol (edgeport/core/contracts.py). Several runners can share one
``BrowserSession`` so that :func:`time_in_page` times them side by side in one page."""

from __future__ import annotations

import atexit
import itertools
import re
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import InputError
from edgeport.formats.web.assets import ORT_WEB_VERSION
from edgeport.formats.web.session import BrowserSession

_names = itertools.count(1)


# One page per (backend, threads) for the whole process: runners opened one by one through
# RunnerSpec.open (the artifact, its fp32 reference, the search's candidates) land in the same
# page, so they can be timed side by side there, and Chromium starts once per conversion.
_shared: dict[tuple[str, int | None], BrowserSession] = {}


def shared_session(backend: str, threads: int | None) -> BrowserSession:
    """Return the open page for ``backend`` and ``threads``, opening it (again, after a page
    error or a crash) when needed; it is closed when the process exits."""
    key = (backend, threads)
    session = _shared.get(key)
    if session is None or not session.alive() or session.failed:
        if session is not None:
            session.close()
        scratch = Path(tempfile.mkdtemp(prefix="edgeport-page-"))
        session = BrowserSession(scratch, backend=backend, threads=threads).open()
        _shared[key] = session
    return session


@atexit.register
def close_shared_sessions() -> None:
    """Close every shared page (their browsers, servers and scratch folders)."""
    for session in list(_shared.values()):
        session.close()
        shutil.rmtree(session.root, ignore_errors=True)
    _shared.clear()


class BrowserRunner:
    """One model loaded in a browser page. ``threads``: the wasm threads of the page; without a
    ``session`` the runner joins the process's shared page for ``backend`` and ``threads``
    (:func:`shared_session`); ``backend``: wasm or webgpu. ``close`` (or the runner's garbage
    collection) releases the model in the page."""

    def __init__(
        self, path: str, threads: int = 1, backend: str = "wasm", session: BrowserSession | None = None
    ) -> None:
        model = Path(path).resolve()
        if not model.is_file():
            raise InputError(f"{path} is not a file")
        self.session = session or shared_session(backend, threads)
        if self.session.backend != backend:
            raise InputError(f"the shared browser session runs {self.session.backend}, not {backend}")
        self.kind = f"browser-{self.session.backend}"
        self.name = f"{model.stem}-{next(_names)}"
        try:
            relative = model.relative_to(self.session.root).as_posix()
        except ValueError:
            relative = None
        loaded = self.session.load(self.name, relative) if relative else self.session.load_file(self.name, model)
        self._release = weakref.finalize(self, _release, self.session, self.name)
        self.load_ms, self.compile_ms = float(loaded["load_ms"]), float(loaded["compile_ms"])
        self.load_seconds = (self.load_ms + self.compile_ms) / 1000.0
        self.input_names: list[str] = list(loaded["inputs"])
        self.output_names: list[str] = list(loaded["outputs"])
        types = loaded.get("input_types") or [None] * len(self.input_names)
        # ort-web calls bool 'bool' and float16 'float16', as numpy does
        self.input_dtypes = {n: t for n, t in zip(self.input_names, types, strict=False) if t}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once on ``feeds`` (cast to the model's input dtypes); return the outputs in order."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise InputError(f"missing input(s) {', '.join(missing)} for {self.name}")
        return self.session.run(self.name, self._cast(feeds))

    def _cast(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: np.asarray(feeds[n], dtype=self.input_dtypes.get(n)) for n in self.input_names}

    def describe(self) -> dict[str, Any]:
        """Return the runtime and version, threads, ``browser`` (user agent, browser, backend,
        threads, SIMD, cross-origin isolation, onnxruntime-web version, the WebGPU adapter),
        ``load`` (fetch and compile ms) and ``memory`` (the page's JS heap)."""
        info = self.session.info()
        version = info.get("ort_version") or ORT_WEB_VERSION
        agent = str(info.get("user_agent") or "")
        browser = {
            "browser": browser_name(agent),
            "user_agent": agent,
            "backend": self.session.backend,
            "ort_web_version": version,
            "threads": info.get("threads"),
            "simd": info.get("simd"),
            "cross_origin_isolated": info.get("cross_origin_isolated"),
        }
        if "webgpu" in info:
            browser["adapter"] = adapter_label(info["webgpu"])
            browser["software_adapter"] = browser["adapter"].startswith("software")
            browser["webgpu"] = info["webgpu"]
        heap = info.get("heap") or {}
        return {
            "runtime": f"onnxruntime-web {version} ({self.session.backend})",
            "version": version,
            "threads": info.get("threads"),
            "browser": browser,
            "load": {"load_ms": self.load_ms, "compile_ms": self.compile_ms},
            "memory": {"js_heap_mb": heap["used_bytes"] / 1e6} if heap.get("used_bytes") else None,
        }

    def time_together(
        self, runners: dict[str, Any], feed_list: list[dict[str, np.ndarray]], runs: int, warmup: int
    ) -> dict[str, list[int]] | None:
        """Time ``runners`` side by side in this runner's page (see :func:`time_in_page`); None
        when they are not all models of that page."""
        if not all(isinstance(r, BrowserRunner) and r.session is self.session for r in runners.values()):
            return None
        return time_in_page(runners, feed_list, runs, warmup)

    def close(self) -> None:
        """Release the model in the page (the page itself stays for the other runners)."""
        self._release()


def _release(session: BrowserSession, name: str) -> None:
    try:
        session.release(name)
    except Exception:  # noqa: BLE001 - a page that is gone has nothing left to release
        pass


def browser_name(user_agent: str) -> str:
    """ "HeadlessChrome 156.0.8078.73" -> "Chromium 156" style name from a user agent string."""
    found = re.search(r"(HeadlessChrome|Chrome|Chromium|Firefox)/(\d+)", user_agent)
    if not found:
        return "a browser"
    name = "Chromium" if "Chrom" in found[1] else found[1]
    return f"{name} {found[2]}{' (headless)' if 'Headless' in found[1] else ''}"


def adapter_label(adapter: dict[str, Any]) -> str:
    """Return how to label WebGPU timings: "software adapter (swiftshader)" for a fallback
    adapter such as Chromium's SwiftShader, "hardware adapter (<vendor> <architecture>)" else,
    or "no adapter: <reason>"."""
    if not adapter.get("available"):
        return f"no adapter: {adapter.get('reason') or 'unknown'}"
    name = " ".join(str(adapter.get(k) or "") for k in ("vendor", "architecture")).strip() or "unknown"
    software = adapter.get("is_fallback_adapter") or adapter.get("architecture") == "swiftshader"
    return f"{'software' if software else 'hardware'} adapter ({name})"


def time_in_page(
    runners: dict[str, BrowserRunner], feed_list: list[dict[str, np.ndarray]], runs: int, warmup: int
) -> dict[str, list[int]]:
    """Time runners that share one session side by side in its page (as
    ``edgeport.runtime.timing.time_side_by_side``, but the loop runs in the browser, so the
    timings hold no Python round trip). Returns per key its ``runs`` timings in nanoseconds."""
    sessions = {id(r.session) for r in runners.values()}
    if len(sessions) != 1:
        raise InputError("runners timed in one page must share one BrowserSession")
    first = next(iter(runners.values()))
    by_name = {r.name: key for key, r in runners.items()}
    feeds = [first._cast(f) for f in feed_list]
    timed = first.session.benchmark(list(by_name), feeds, runs, warmup)
    return {by_name[name]: values for name, values in timed.items()}
