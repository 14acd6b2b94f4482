"""edgeport: convert a trained model into a verified, device-tuned ONNX/TFLite/Core ML artifact.

The Python API is :func:`edgeport.convert`; the CLI (``edgeport convert`` / ``convert.py``) is a
thin layer over it.
"""

from __future__ import annotations

import os

# ONNX Runtime's telemetry (1DS, on Linux since 1.2x) writes a session file `.ses` into the
# system temp folder when onnxruntime is imported, outside the bundle and the removed work folder
# that are all edgeport may write. It is read once, before onnxruntime initializes: set it here,
# before any edgeport module imports onnxruntime. A user's own setting wins.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
# Torch makes $TMPDIR/torchinductor_$USER when torch._dynamo is imported (torch.export.load does),
# and Keras writes ~/.keras/keras.json on import: both go under edgeport's documented cache instead.
_cache = os.environ.get("EDGEPORT_CACHE_DIR") or os.path.join("~", ".cache", "edgeport")  # as core/cache.py
_third_party = os.path.join(_cache, "third-party")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.expanduser(os.path.join(_third_party, "torchinductor")))
os.environ.setdefault("KERAS_HOME", os.path.expanduser(os.path.join(_third_party, "keras")))

# The log levels of TensorFlow, absl, gRPC and the other C++ libraries are read at their import:
# set them here too, before any edgeport module imports them (edgeport/core/quiet.py; --debug
# leaves them alone).
from edgeport.core.quiet import apply_env  # noqa: E402

apply_env()

from typing import TYPE_CHECKING, Any  # noqa: E402

from edgeport.core.errors import ConversionError, EdgeportError, GateFailed, InputError  # noqa: E402
from edgeport.core.version import __version__  # noqa: E402

if TYPE_CHECKING:
    from edgeport.api import convert

__all__ = ["convert", "EdgeportError", "InputError", "ConversionError", "GateFailed", "__version__"]


def __getattr__(name: str) -> Any:
    """Import ``edgeport.convert`` on first use: the API pulls in onnx and the pipeline, and a
    server that has installed edgeport with only numpy and onnxruntime imports ``edgeport.runtime``,
    which runs this package file first."""
    if name == "convert":
        from edgeport.api import convert

        return convert
    raise AttributeError(f"module 'edgeport' has no attribute {name!r}")
