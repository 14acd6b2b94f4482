"""ONNX Runtime sessions that edgeport does not open itself (the quantizer's calibrator, its
pre-processing) made able to run the run's custom-domain nodes (edgeport/ops)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edgeport.runtime.ort import custom_ops_in_use, session_options_with_custom_ops


@contextmanager
def custom_op_sessions() -> Iterator[None]:
    """While open, every ``onnxruntime.InferenceSession`` created in this process registers the
    run's custom-op libraries and loads the model through the run's transform (Python-kernel nodes renamed) (see
    ``edgeport.runtime.ort.use_custom_ops``). Without custom ops it changes nothing.

    ORT's calibrator builds its own SessionOptions with no hook for custom ops, hence the
    replacement of the class for the duration (restored on exit)."""
    libraries, transform = custom_ops_in_use()
    if not libraries and transform is None:
        yield
        return
    import onnxruntime

    original = onnxruntime.InferenceSession

    def session(model: Any, sess_options: Any = None, providers: Any = None, **kwargs: Any) -> Any:
        options = sess_options if sess_options is not None else onnxruntime.SessionOptions()
        session_options_with_custom_ops(options, libraries)
        return original(transform(model) if transform else model, options, providers=providers, **kwargs)

    onnxruntime.InferenceSession = session
    try:
        yield
    finally:
        onnxruntime.InferenceSession = original
