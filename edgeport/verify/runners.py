"""Runners: load an artifact, run it on numpy inputs, report timings and the environment.

Runners know nothing of conversion: they get a model file (or bytes) and inputs.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_ORT_TO_NUMPY = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(bool)": "bool",
    "tensor(double)": "float64",
}


class OrtRunner:
    """An ONNX Runtime session with a fixed thread count and no spinning worker threads.

    Spinning is off because two sessions timed side by side would otherwise steal each
    other's cores (measured: 2x latency with 2 threads; ../shared/STACK.md).
    """

    kind = "onnxruntime"

    def __init__(
        self, model: str | Path | bytes, threads: int = 1, providers: tuple[str, ...] = ("CPUExecutionProvider",)
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        self.providers = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        self.threads = threads
        start = time.perf_counter()
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=self.providers)
        self.load_seconds = time.perf_counter() - start
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_dtypes = {i.name: _ORT_TO_NUMPY.get(i.type, "float32") for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once on ``feeds`` (by input name, cast to the model's dtypes); return the outputs."""
        inputs = {n: np.ascontiguousarray(feeds[n], dtype=self.input_dtypes[n]) for n in self.input_names}
        return self.session.run(self.output_names, inputs)

    def describe(self) -> dict[str, Any]:
        """Return the runtime, its version, providers, threads and host (for the report)."""
        import onnxruntime as ort

        return {
            "runtime": "onnxruntime",
            "version": ort.__version__,
            "providers": self.providers,
            "threads": self.threads,
            "host": host_description(),
        }


_INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "fphp", "sve")


def host_description() -> dict[str, Any]:
    """Return a short description of this machine (OS, CPU, core count)."""
    import os

    from edgeport.profiles.detect import cpu_flags

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "cpu_flags": sorted(f for f in cpu_flags() if f in _INTERESTING_FLAGS),
    }


@dataclass
class RunnerSpec:
    """How to open a runner for an artifact: kind (``onnxruntime``, ``litert``, ``coreml`` or
    ``coreml-emulated``), file and keyword arguments. JSON-ready, so a child process or another
    machine can rebuild it."""

    kind: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def open(self, threads: int = 1):
        """Return a loaded runner (OrtRunner, LiteRTRunner, CoreMLRunner...) for this spec."""
        if self.kind == "onnxruntime":
            return OrtRunner(self.path, threads, tuple(self.kwargs.get("providers", ("CPUExecutionProvider",))))
        if self.kind == "litert":
            from edgeport.verify.litert_runner import LiteRTRunner

            return LiteRTRunner(self.path, threads, **self.kwargs)
        if self.kind == "coreml":  # macOS only; elsewhere it raises CoreMLUnavailable
            from edgeport.verify.coreml_runner import CoreMLRunner

            return CoreMLRunner(self.path, threads, **self.kwargs)
        if self.kind == "coreml-emulated":
            from edgeport.verify.coreml_runner import EmulatedCoreMLRunner

            return EmulatedCoreMLRunner(self.path, threads, **self.kwargs)
        raise ValueError(f"unknown runner kind {self.kind!r}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {"kind": self.kind, "path": self.path, "kwargs": self.kwargs}
