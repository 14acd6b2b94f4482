"""The figures of a .tflite with custom ops, off the app: LiteRT in Python has no custom-op
registration, so such a file does not run here ("Encountered unresolved custom op"). This runner
is the artifact's *emulation*: LiteRT runs every other op of the very file (split at the custom
ops, :mod:`edgeport.formats.tflite.custom_flatbuffer`) and each custom op is computed by its
registered reference in Python between invocations. Fidelity is then the file's own except for
the custom kernels; latency, load time and memory are "not run" (the app's kernels are unknown).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.formats.tflite.custom_flatbuffer import run_with_kernels, split_at_custom_ops
from edgeport.formats.tflite.custom_kernels import load_sources, site_kernel
from edgeport.runtime.litert import LiteRTRunner


class CustomOpEmulationRunner:
    """Runner (``core.contracts.Runner``) of a .tflite whose custom ops run as Python references.

    ``custom_ops``: the file's ``CustomSite.to_dict()`` list; ``op_sources``: the op modules to
    load when the ops are not registered in this process; ``not_run``: why latency is not
    measured; the other keyword arguments are :class:`LiteRTRunner`'s (ONNX names and layouts).
    """

    kind = "litert-custom-emulated"

    def __init__(
        self,
        path: str | Path,
        threads: int = 1,
        custom_ops: list[dict[str, Any]] | None = None,
        op_sources: list[str] | None = None,
        not_run: str | None = None,
        input_names: list[str] | None = None,
        output_names: list[str] | None = None,
        **litert: Any,
    ) -> None:
        start = time.perf_counter()
        sites = list(custom_ops or [])
        load_sources(list(op_sources or []))
        self.path = Path(path)
        split, self.cut = split_at_custom_ops(self.path.read_bytes(), {s["custom_code"] for s in sites})
        self.kernels = {s["custom_code"]: site_kernel(s) for s in sites}
        self.codes = sorted(self.kernels)
        self.not_run = not_run
        self.inner = LiteRTRunner(
            split,
            threads,
            input_names=[*(input_names or []), *(s.output_name for s in self.cut)],
            output_names=[*(output_names or []), *(s.input_name for s in self.cut)],
            **litert,
        )
        extra = len(self.cut)
        self.input_names = self.inner.input_names[: len(self.inner.input_names) - extra]
        self.output_names = self.inner.output_names[: len(self.inner.output_names) - extra]
        self.load_seconds = time.perf_counter() - start

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the file on ``feeds`` (ONNX names and layout), its custom ops by their references;
        return the outputs in ONNX order and layout."""
        batch = int(np.asarray(next(iter(feeds.values()))).shape[0])

        def invoke(extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(self.inner.output_names, self.inner.run({**feeds, **extra}), strict=True))

        outputs = run_with_kernels(invoke, self.cut, self.kernels, batch)
        return [outputs[name] for name in self.output_names]

    def describe(self) -> dict[str, Any]:
        """What ran: LiteRT for the file's builtins, Python references for its custom ops."""
        described = dict(self.inner.describe())
        described.update(
            runtime="LiteRT (builtins) + Python references (custom ops)",
            emulated=(
                f"LiteRT ran every builtin op of {self.path.name}; its custom op(s) {', '.join(self.codes)} "
                "were computed by their registered references in Python (the app's kernels are not available here)"
            ),
        )
        return described
