"""The ONNX Runtime runner: loads an ONNX file, runs it on numpy inputs, reports timings and the
environment.

Runners (this folder) know nothing of conversion: they get a model file (or bytes) and inputs,
and import only numpy, their runtime and each other, so the device harness ships them as they
are (verify/remote.py). They follow ``edgeport.core.contracts.Runner``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import ConversionError
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

# Custom ops every session of this process registers (set by the pipeline from the op registry,
# see edgeport/ops/ort.py): compiled custom-op libraries, and a transform of the model applied
# before loading (edgeport/ops renames custom-domain nodes so that a Python kernel, served by
# onnxruntime-extensions' PyOp only in domain ai.onnx.contrib, runs a node the artifact keeps in
# the user's domain). A callable, so this module needs no onnx package: it ships to devices with
# numpy and onnxruntime only. Process-wide because a dozen places open sessions (the search,
# sensitivity, calibration); a runner given its own values uses those.
ModelTransform = Callable[[Any], Any]
_CUSTOM_LIBRARIES: tuple[str, ...] = ()
_CUSTOM_TRANSFORM: ModelTransform | None = None


def use_custom_ops(libraries: tuple[str, ...] | list[str] = (), transform: ModelTransform | None = None) -> None:
    """Make every ONNX Runtime session of this process register ``libraries`` and load the model
    through ``transform`` (a path or bytes in, a path or bytes out); ``use_custom_ops()`` clears both."""
    global _CUSTOM_LIBRARIES, _CUSTOM_TRANSFORM
    _CUSTOM_LIBRARIES = tuple(libraries)
    _CUSTOM_TRANSFORM = transform


def custom_ops_in_use() -> tuple[tuple[str, ...], ModelTransform | None]:
    """Return the process-wide custom-op libraries and model transform (see :func:`use_custom_ops`)."""
    return _CUSTOM_LIBRARIES, _CUSTOM_TRANSFORM


_REGISTERED_KEY = "edgeport.custom_op_libraries"


def session_options_with_custom_ops(options: Any, libraries: tuple[str, ...] | list[str]) -> Any:
    """Register each custom-op library on the ONNX Runtime ``options`` (once: a library registered
    twice on one options object conflicts with itself); return them. A library that fails to
    load raises a one-line ConversionError naming it."""
    try:
        done = set(filter(None, options.get_session_config_entry(_REGISTERED_KEY).split("\n")))
    except Exception:  # no such entry yet
        done = set()
    for library in libraries:
        if str(library) in done:
            continue
        try:
            options.register_custom_ops_library(str(library))
        except Exception as exc:  # onnxruntime raises its own Fail type
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConversionError(f"custom op library {library} could not be registered: {first}") from exc
        done.add(str(library))
    if done:
        options.add_session_config_entry(_REGISTERED_KEY, "\n".join(sorted(done)))
    return options


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
        custom_op_libraries: tuple[str, ...] | list[str] | None = None,
        custom_op_transform: ModelTransform | None = None,
    ) -> None:
        """``model``: a file, or serialized bytes whose external data (if any) lies in ``external_folder``.
        ``custom_op_libraries``/``custom_op_transform``: see :func:`use_custom_ops` (None: the process's)."""
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
        libraries = _CUSTOM_LIBRARIES if custom_op_libraries is None else tuple(custom_op_libraries)
        session_options_with_custom_ops(options, libraries)
        transform = _CUSTOM_TRANSFORM if custom_op_transform is None else custom_op_transform
        available = ort.get_available_providers()
        self.providers = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        self.threads = threads
        start = time.perf_counter()
        model = transform(model) if transform is not None else model
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
