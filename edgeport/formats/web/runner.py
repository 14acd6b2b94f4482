"""``BrowserRunner``: an ONNX model run by onnxruntime-web in headless Chromium, behind the
``Runner`` protocol (edgeport/core/contracts.py). Several runners can share one
``BrowserSession`` so that :func:`time_in_page` times them side by side in one page."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import InputError
from edgeport.formats.web.assets import ORT_WEB_VERSION
from edgeport.formats.web.session import BrowserSession

_names = itertools.count(1)


class BrowserRunner:
    """One model loaded in a browser page. ``threads``: the wasm threads of the session it opens
    when none is given (a shared ``session`` keeps its own); ``backend``: wasm or webgpu."""

    def __init__(
        self, path: str, threads: int = 1, backend: str = "wasm", session: BrowserSession | None = None
    ) -> None:
        model = Path(path).resolve()
        if not model.is_file():
            raise InputError(f"{path} is not a file")
        self._own = session is None
        self.session = session or BrowserSession(model.parent, backend=backend, threads=threads).open()
        try:
            if session is not None and session.backend != backend:
                raise InputError(f"the shared browser session runs {session.backend}, not {backend}")
            self.kind = f"browser-{self.session.backend}"
            self.name = f"{model.stem}-{next(_names)}"
            try:
                relative = model.relative_to(self.session.root).as_posix()
            except ValueError:
                raise InputError(f"{path} is not under the session's folder {self.session.root}") from None
            loaded = self.session.load(self.name, relative)
        except BaseException:
            self.close()
            raise
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
        """Return the runtime, threads, user agent, SIMD, isolation and load/compile times."""
        info = self.session.info()
        described = {
            "runtime": f"onnxruntime-web {info.get('ort_version') or ORT_WEB_VERSION} ({self.session.backend})",
            "version": info.get("ort_version") or ORT_WEB_VERSION,
            "backend": self.session.backend,
            "threads": info.get("threads"),
            "user_agent": info.get("user_agent"),
            "simd": info.get("simd"),
            "cross_origin_isolated": info.get("cross_origin_isolated"),
            "load_ms": self.load_ms,
            "compile_ms": self.compile_ms,
            "heap": info.get("heap"),
        }
        if "webgpu" in info:
            described["webgpu"] = info["webgpu"]
            described["adapter"] = adapter_label(info["webgpu"])
        return described

    def close(self) -> None:
        """Close the browser session when this runner opened it."""
        if self._own:
            self.session.close()


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
