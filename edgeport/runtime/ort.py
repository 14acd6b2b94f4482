"""The ONNX Runtime runner: loads an ONNX file, runs it on numpy inputs, reports timings and the
environment.

Runners (this folder) know nothing of conversion: they get a model file (or bytes) and inputs,
and import only numpy, their runtime and each other, so the device harness ships them as they
are (verify/remote.py). They follow ``edgeport.core.contracts.Runner``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.runtime.host import host_description

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
        self,
        model: str | Path | bytes,
        threads: int = 1,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        external_folder: str | Path | None = None,
    ) -> None:
        """``model``: a file, or serialized bytes whose external data (if any) lies in ``external_folder``."""
        import onnxruntime as ort

        if not os.environ.get("EDGEPORT_DEBUG"):  # edgeport/core/quiet.py: errors only, unless --debug
            ort.set_default_logger_severity(3)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if external_folder is not None and isinstance(model, bytes):
            folder_key = "session.model_external_initializers_file_folder_path"
            options.add_session_config_entry(folder_key, str(external_folder))
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
